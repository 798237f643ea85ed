//! Robot credentials (docs/SECURITY.md): tokens bound to one robot address.
//!
//! The store never sees a token, only the hash the server made of it (`token_hash`), which is
//! what an upgrade request is looked up by; a credential leaves this crate without it. An
//! address that has at least one credential is protected: [`WriteTx::admit_robot`] decides,
//! inside the registration's own transaction, whether a connection may register as it. A
//! revoked credential is deleted, and on PostgreSQL every instance is told at the revocation's
//! commit (`NOTIFY`), so that the one holding a connection that used it closes it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::connection::DbConnection;
use crate::events::EventType;
use crate::robots::load_robot;
use crate::schema::{robot_credentials, robots};
use crate::time::{Micros, OptionalMicros, to_micros};
use crate::{ReadConn, RobotRecord, StoreError, WriteTx};

/// The channel on which PostgreSQL instances announce revoked credentials.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) const REVOKED_CHANNEL: &str = "rpa_credentials";

/// `last_used_at` moves at most this often (microseconds): a robot that reconnects in a loop
/// does not cost a row update each time.
const LAST_USED_STEP: i64 = 60_000_000;

/// A credential as stored, without its token or the token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize, Deserialize)]
#[diesel(table_name = robot_credentials, check_for_backend(crate::connection::MultiBackend))]
pub struct CredentialRecord {
    pub id: i64,
    pub robot_address: String,
    pub description: String,
    #[diesel(deserialize_as = Micros)]
    pub created_at: DateTime<Utc>,
    /// The last registration made with it, to the minute; `None` before the first.
    #[diesel(deserialize_as = OptionalMicros)]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A credential to create. `token_hash` is the server's hash of the token it hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub robot_address: String,
    pub description: String,
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
}

/// What [`WriteTx::create_credential`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateCredential {
    Created(Box<CredentialRecord>),
    /// The robot has as many credentials as it may: one must be revoked first.
    TooMany,
}

/// Whether a connection may register as an address ([`WriteTx::admit_robot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The address has credentials and the connection presented none of them.
    Protected,
    /// The connection's credential no longer exists: it was revoked after the upgrade.
    Revoked,
    /// The connection's credential belongs to another address.
    OtherAddress {
        bound: String,
    },
}

/// An event's snapshot of a credential change: the robot as it is, and the credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CredentialSnapshot {
    pub(crate) robot: RobotRecord,
    pub(crate) credential: CredentialRecord,
}

impl WriteTx<'_> {
    /// Creates a credential for `new.robot_address`, recording the robot first if it never
    /// registered (an operator enrols a robot before its first connection). At most
    /// `max_per_robot` credentials per robot. Event: `robot.credential_created`.
    pub fn create_credential(
        &mut self,
        new: &NewCredential,
        max_per_robot: i64,
    ) -> Result<CreateCredential, StoreError> {
        // Locked on PostgreSQL, so that two instances enrolling at once count each other's.
        let known: Option<String> = crate::connection::locked!(
            &mut *self.conn,
            robots::table
                .find(&new.robot_address)
                .select(robots::address),
            |q, c| q.first(c).optional()
        )?;
        if known.is_none() {
            // Only an unknown address is recorded: a known robot keeps its name and record.
            self.record_robot(&new.robot_address, "", new.created_at)?;
        }
        let count: i64 = robot_credentials::table
            .filter(robot_credentials::robot_address.eq(&new.robot_address))
            .count()
            .get_result(self.conn)?;
        if count >= max_per_robot {
            return Ok(CreateCredential::TooMany);
        }
        let id: i64 = diesel::insert_into(robot_credentials::table)
            .values((
                robot_credentials::robot_address.eq(&new.robot_address),
                robot_credentials::description.eq(&new.description),
                robot_credentials::token_hash.eq(&new.token_hash),
                robot_credentials::created_at.eq(to_micros(new.created_at)),
            ))
            .returning(robot_credentials::id)
            .get_result(self.conn)?;
        let credential = robot_credentials::table
            .find(id)
            .select(CredentialRecord::as_select())
            .first(self.conn)?;
        self.credential_event(
            EventType::RobotCredentialCreated,
            &credential,
            new.created_at,
            "credential created",
        )?;
        Ok(CreateCredential::Created(Box::new(credential)))
    }

    /// Revokes (deletes) credential `id` of `address`; `None` when it has no such credential.
    /// On PostgreSQL every instance hears of it when this commits. Event:
    /// `robot.credential_revoked`.
    pub fn revoke_credential(
        &mut self,
        address: &str,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let found: Option<CredentialRecord> = robot_credentials::table
            .find(id)
            .filter(robot_credentials::robot_address.eq(address))
            .select(CredentialRecord::as_select())
            .first(self.conn)
            .optional()?;
        let Some(credential) = found else {
            return Ok(None);
        };
        diesel::delete(robot_credentials::table.find(id)).execute(self.conn)?;
        announce_revoked(self.conn, id)?;
        self.credential_event(
            EventType::RobotCredentialRevoked,
            &credential,
            at,
            "credential revoked",
        )?;
        Ok(Some(credential))
    }

    /// Decides whether a connection that presented `credential` (or none) may register as
    /// `address`, from the rows as they are in this transaction: an address with credentials
    /// takes only a connection holding one of them, and a credential registers only its own
    /// address. An admitted credential's `last_used_at` moves to `at` (at most once a minute).
    pub fn admit_robot(
        &mut self,
        address: &str,
        credential: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<Admission, StoreError> {
        let Some(id) = credential else {
            let protected = robot_credentials::table
                .filter(robot_credentials::robot_address.eq(address))
                .select(robot_credentials::id)
                .first::<i64>(self.conn)
                .optional()?
                .is_some();
            return Ok(if protected {
                Admission::Protected
            } else {
                Admission::Admitted
            });
        };
        let bound: Option<String> = robot_credentials::table
            .find(id)
            .select(robot_credentials::robot_address)
            .first(self.conn)
            .optional()?;
        match bound {
            None => Ok(Admission::Revoked),
            Some(bound) if bound != address => Ok(Admission::OtherAddress { bound }),
            Some(_) => {
                let at = to_micros(at);
                diesel::update(
                    robot_credentials::table.find(id).filter(
                        robot_credentials::last_used_at
                            .is_null()
                            .or(robot_credentials::last_used_at.le(at - LAST_USED_STEP)),
                    ),
                )
                .set(robot_credentials::last_used_at.eq(at))
                .execute(self.conn)?;
                Ok(Admission::Admitted)
            }
        }
    }

    fn credential_event(
        &mut self,
        kind: EventType,
        credential: &CredentialRecord,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let robot = load_robot(self.conn, &credential.robot_address)?
            // Its credential's foreign key keeps it.
            .ok_or(StoreError::Database(diesel::result::Error::NotFound))?;
        self.subject_event(
            kind,
            format!("robots/{}", credential.robot_address),
            at,
            Some(reason),
            &CredentialSnapshot {
                robot,
                credential: credential.clone(),
            },
        )
    }
}

/// PostgreSQL: tells every instance, when (and only if) this transaction commits, that
/// credential `id` is revoked. Nothing to tell on SQLite, whose one server revokes it itself.
fn announce_revoked(conn: &mut DbConnection, id: i64) -> Result<(), StoreError> {
    match conn {
        DbConnection::Sqlite(_) => {
            let _ = id;
            Ok(())
        }
        #[cfg(feature = "postgres")]
        DbConnection::Pg(conn) => {
            diesel::select(pg::pg_notify(REVOKED_CHANNEL, id.to_string())).execute(conn)?;
            Ok(())
        }
    }
}

#[cfg(feature = "postgres")]
mod pg {
    diesel::define_sql_function! {
        fn pg_notify(channel: diesel::sql_types::Text, payload: diesel::sql_types::Text);
    }
}

impl ReadConn<'_> {
    /// The robot's credentials, oldest first.
    pub fn credentials(&mut self, address: &str) -> Result<Vec<CredentialRecord>, StoreError> {
        Ok(robot_credentials::table
            .filter(robot_credentials::robot_address.eq(address))
            .order(robot_credentials::id.asc())
            .select(CredentialRecord::as_select())
            .load(self.conn)?)
    }

    /// Credential `id` of `address`, if it has one.
    pub fn credential(
        &mut self,
        address: &str,
        id: i64,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        Ok(robot_credentials::table
            .find(id)
            .filter(robot_credentials::robot_address.eq(address))
            .select(CredentialRecord::as_select())
            .first(self.conn)
            .optional()?)
    }

    /// The credential whose token hashes to `token_hash`, if it exists (was not revoked).
    pub fn credential_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        Ok(robot_credentials::table
            .filter(robot_credentials::token_hash.eq(token_hash))
            .select(CredentialRecord::as_select())
            .first(self.conn)
            .optional()?)
    }

    /// Which of `ids` still exist.
    pub fn existing_credentials(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let mut existing = Vec::new();
        for chunk in ids.chunks(500) {
            let found: Vec<i64> = robot_credentials::table
                .filter(robot_credentials::id.eq_any(chunk))
                .select(robot_credentials::id)
                .load(self.conn)?;
            existing.extend(found);
        }
        Ok(existing)
    }
}
