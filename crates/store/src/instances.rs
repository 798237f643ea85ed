//! Server instances sharing the database, and what happens when one dies.
//!
//! Each instance has a row with a lease it renews while it runs (see the server's heartbeat).
//! Robots record the instance holding their live connection. An instance whose lease has passed
//! is dead: any other instance *reaps* it, in one transaction: its robots go offline, the
//! sendings to them that were never confirmed wait for the robot again (or fail at the limit of
//! sendings), and its row is deleted. The robots reconnect through the load balancer to a live
//! instance, which claims their jobs at registration.
//!
//! A robot that reconnected elsewhere before its old instance was reaped is already held by the
//! new one: the reaper leaves it alone, and its unconfirmed sendings are taken over at its
//! registration ([`WriteTx::register_robot`]).
//!
//! On SQLite there is one instance: at its start every other row is dead, whatever its lease.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::connection::DbConnection;
use crate::schema::{instances, jobs, robots};
use crate::time::{Micros, to_micros};
use crate::{Delivery, DeliveryPolicy, JobStatus, StoreError, WriteTx};

/// What [`WriteTx::reap_instances`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// The dead instances removed.
    pub instances: Vec<String>,
    /// Robots they held, now offline.
    pub robots: usize,
    /// Unconfirmed sendings to those robots, Pending again (or failed at the limit).
    pub sendings: usize,
}

/// One server instance, as recorded: also the row, as the queries read it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = instances, check_for_backend(crate::connection::MultiBackend))]
pub struct InstanceRecord {
    pub id: String,
    #[diesel(deserialize_as = Micros)]
    pub started_at: DateTime<Utc>,
    #[diesel(deserialize_as = Micros)]
    pub lease_until: DateTime<Utc>,
    pub description: String,
}

impl WriteTx<'_> {
    /// Records this instance as running, its lease valid until `lease_until`.
    pub fn register_instance(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        description: &str,
    ) -> Result<(), StoreError> {
        diesel::insert_into(instances::table)
            .values((
                instances::id.eq(self.instance),
                instances::started_at.eq(to_micros(now)),
                instances::lease_until.eq(to_micros(lease_until)),
                instances::description.eq(description),
            ))
            .execute(self.conn)?;
        Ok(())
    }

    /// Renews this instance's lease. False when its row is gone: another instance found the
    /// lease passed and reaped it (its robots are offline in the database), so this instance
    /// must let its robots go (they reconnect and register again).
    pub fn renew_lease(&mut self, lease_until: DateTime<Utc>) -> Result<bool, StoreError> {
        let updated = diesel::update(instances::table.find(self.instance))
            .set(instances::lease_until.eq(to_micros(lease_until)))
            .execute(self.conn)?;
        Ok(updated > 0)
    }

    /// Reaps the instances whose lease passed before `now`, or with `all_others` every instance
    /// but this one (the start of the only instance of a SQLite database). Also takes offline
    /// robots recorded as held by an instance that has no row (a crash between writes cannot
    /// leave one, but an operator's cleanup can).
    pub fn reap_instances(
        &mut self,
        now: DateTime<Utc>,
        policy: &DeliveryPolicy,
        all_others: bool,
    ) -> Result<Reaped, StoreError> {
        let now_micros = to_micros(now);
        let others = instances::table.filter(instances::id.ne(self.instance));
        let dead: Vec<String> = if all_others {
            others.select(instances::id).load(self.conn)?
        } else {
            others
                .filter(instances::lease_until.lt(now_micros))
                .select(instances::id)
                .load(self.conn)?
        };
        let live: Vec<String> = instances::table
            .filter(instances::id.ne_all(&dead))
            .select(instances::id)
            .load(self.conn)?;
        let held_by_none_alive = robots::table
            .filter(robots::instance_id.is_not_null())
            .filter(robots::instance_id.ne_all(&live));
        let addresses: Vec<String> = held_by_none_alive.select(robots::address).load(self.conn)?;
        let mut reaped = Reaped {
            instances: dead.clone(),
            ..Reaped::default()
        };
        for chunk in addresses.chunks(500) {
            // The holder is checked again on the row itself: a robot that registered elsewhere
            // since the read above (or that a second reaper got to first) is left alone.
            let update = diesel::update(
                robots::table
                    .filter(robots::address.eq_any(chunk))
                    .filter(robots::instance_id.is_not_null())
                    .filter(robots::instance_id.ne_all(&live)),
            )
            .set((
                robots::online.eq(false),
                robots::connection_id.eq(None::<String>),
                robots::instance_id.eq(None::<String>),
                robots::last_seen.eq(now_micros),
                robots::offline_since.eq(Some(now_micros)),
            ))
            .returning(robots::address);
            let offline: Vec<String> = update.get_results(self.conn)?;
            reaped.robots += offline.len();
            let reason = if all_others {
                "server restarted"
            } else {
                "the server instance that held its connection stopped"
            };
            self.robots_offline(&offline, now, reason)?;
            let in_flight = unconfirmed(self.conn, &offline)?;
            reaped.sendings += in_flight.len();
            self.requeue(
                &in_flight,
                now,
                policy,
                None,
                "the server instance that sent it stopped before the robot confirmed receipt: resending when the robot connects",
            )?;
        }
        for chunk in dead.chunks(500) {
            diesel::delete(instances::table.filter(instances::id.eq_any(chunk)))
                .execute(self.conn)?;
        }
        Ok(reaped)
    }

    /// At an orderly stop: this instance's row goes (its robots were closed and recorded
    /// offline one by one).
    pub fn retire_instance(&mut self) -> Result<(), StoreError> {
        diesel::delete(instances::table.find(self.instance)).execute(self.conn)?;
        Ok(())
    }

    /// Unconfirmed sendings (job id, sending number) become Pending again, due at `wake_at`
    /// (None: parked until the robot registers), or fail when that sending was the last one
    /// allowed. Shared by the recovery at start, the reaping of a dead instance and the
    /// take-over of a robot that moved.
    pub(crate) fn requeue(
        &mut self,
        sendings: &[(i64, i32)],
        now: DateTime<Utc>,
        policy: &DeliveryPolicy,
        wake_at: Option<DateTime<Utc>>,
        reason: &str,
    ) -> Result<(), StoreError> {
        for &(id, attempts) in sendings {
            if attempts >= policy.max_attempts {
                let reason = format!(
                    "the server stopped before the last allowed sending ({attempts}) was confirmed"
                );
                self.fail(id, JobStatus::Executed, now, &reason)?;
            } else {
                let after =
                    self.set_status(id, JobStatus::Pending, Delivery::Idle, wake_at, now)?;
                // A pool job is due again at once, for whichever robot of its pool is free.
                if crate::transitions::release_to_pool(self.conn, id, None)? {
                    diesel::update(crate::schema::jobs::table.find(id))
                        .set(crate::schema::jobs::wake_at.eq(Some(crate::time::to_micros(now))))
                        .execute(self.conn)?;
                }
                self.changed_job(
                    crate::EventType::JobRequeued,
                    id,
                    (JobStatus::Executed, JobStatus::Pending),
                    &after,
                    now,
                    reason,
                );
            }
        }
        Ok(())
    }
}

/// The robots' sendings that were claimed or written but never confirmed (job id, sending
/// number).
pub(crate) fn unconfirmed(
    conn: &mut DbConnection,
    robots: &[String],
) -> Result<Vec<(i64, i32)>, StoreError> {
    Ok(jobs::table
        .filter(jobs::robot_address.eq_any(robots))
        .filter(jobs::status.eq(JobStatus::Executed))
        .filter(jobs::delivery.eq_any([Delivery::Claimed, Delivery::AwaitingAck]))
        .select((jobs::id, jobs::attempts))
        .order(jobs::id.asc())
        .load(conn)?)
}

impl crate::ReadConn<'_> {
    /// The instances sharing the database, oldest first.
    pub fn instances(&mut self) -> Result<Vec<InstanceRecord>, StoreError> {
        Ok(instances::table
            .order((instances::started_at.asc(), instances::id.asc()))
            .select(InstanceRecord::as_select())
            .load(self.conn)?)
    }
}
