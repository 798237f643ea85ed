//! Robots and the messages they send.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::events::EventType;
use crate::schema::{robot_messages, robots};
use crate::time::{Micros, to_micros};
use crate::{ReadConn, StoreError, WriteTx};

/// A robot as stored: also the row, as the queries read it. Times are UTC; JSON columns are
/// kept as text, as received.
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, Selectable, serde::Serialize, serde::Deserialize,
)]
#[diesel(table_name = robots, check_for_backend(crate::connection::MultiBackend))]
pub struct RobotRecord {
    pub address: String,
    pub name: String,
    /// JSON of the metadata's `userID` (a number) or `uuid` (a string).
    pub user_id: Option<String>,
    pub online: bool,
    pub connection_id: Option<String>,
    /// 1 for field robots, 2 for the extended protocol; 0 for a robot recorded before its first
    /// registration, whose times and metadata mean nothing yet.
    pub protocol: i32,
    #[diesel(deserialize_as = Micros)]
    pub first_seen: DateTime<Utc>,
    #[diesel(deserialize_as = Micros)]
    pub last_seen: DateTime<Utc>,
    /// The metadata object as received (JSON).
    pub metadata: String,
    /// The server instance that holds its live connection (None when offline).
    #[diesel(column_name = instance_id)]
    pub instance: Option<String>,
}

impl RobotRecord {
    /// False for a robot recorded in advance that never registered: its times, user id and
    /// metadata are placeholders until it does.
    pub fn registered(&self) -> bool {
        self.protocol != NEVER_REGISTERED
    }
}

/// What `PUT /api/robots/{address}` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutRobot {
    /// Recorded now, before its first registration.
    Created(Box<RobotRecord>),
    /// It existed, and its name changed.
    Renamed(Box<RobotRecord>),
    /// It existed with that name already.
    Unchanged(Box<RobotRecord>),
}

/// The `protocol` of a robot that was recorded (an operator enrolled it) and never registered.
const NEVER_REGISTERED: i32 = 0;

/// The robot's record as it is now.
pub(crate) fn load_robot(
    conn: &mut crate::connection::DbConnection,
    address: &str,
) -> Result<Option<RobotRecord>, StoreError> {
    Ok(robots::table
        .find(address)
        .select(RobotRecord::as_select())
        .first(conn)
        .optional()?)
}

/// What a robot's accepted metadata records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotRegistration {
    pub address: String,
    pub name: String,
    pub user_id: Option<String>,
    pub protocol: i32,
    pub metadata: String,
    pub connection_id: String,
    pub at: DateTime<Utc>,
}

/// A message a robot sent, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = robot_messages, check_for_backend(crate::connection::MultiBackend))]
pub struct RobotMessageRecord {
    pub id: i64,
    pub robot_address: String,
    pub connection_id: String,
    #[diesel(deserialize_as = Micros)]
    pub received_at: DateTime<Utc>,
    /// JSON as the robot sent it.
    pub value: String,
}

/// Which robots a listing returns: keyset pages ordered by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RobotFilter {
    pub online: Option<bool>,
    /// Only addresses after this one.
    pub after: Option<String>,
    pub limit: i64,
}

/// What a registration writes to the robot's row, the first time and every time after.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = robots, treat_none_as_null = true)]
struct Registered<'a> {
    name: &'a str,
    user_id: Option<&'a str>,
    online: bool,
    connection_id: &'a str,
    protocol: i32,
    last_seen: i64,
    metadata: &'a str,
    instance_id: &'a str,
    /// A registration ends an outage: the next one is told again (`robot.unreachable`).
    offline_since: Option<i64>,
    unreachable_alerted: bool,
}

impl WriteTx<'_> {
    /// Records the robot as online on `connection_id`, creating it on its first registration.
    /// Returns true when the robot was new.
    ///
    /// Events: `robot.registered` the first time; `robot.online` when it was offline, or
    /// ("replaced") online on another connection; nothing when the same connection sends its
    /// metadata again.
    pub fn register_robot(
        &mut self,
        robot: &RobotRegistration,
        policy: &crate::DeliveryPolicy,
    ) -> Result<bool, StoreError> {
        if self.conn.shared() {
            self.take_over(robot, policy)?;
        }
        let before: Option<(bool, Option<String>, i32)> = robots::table
            .find(&robot.address)
            .select((robots::online, robots::connection_id, robots::protocol))
            .first(self.conn)
            .optional()?;
        let first_time = before
            .as_ref()
            .is_none_or(|(_, _, protocol)| *protocol == NEVER_REGISTERED);
        let at = to_micros(robot.at);
        let registered = Registered {
            name: &robot.name,
            user_id: robot.user_id.as_deref(),
            online: true,
            connection_id: &robot.connection_id,
            protocol: robot.protocol,
            last_seen: at,
            metadata: &robot.metadata,
            instance_id: self.instance,
            offline_since: None,
            unreachable_alerted: false,
        };
        let online_reason = match &before {
            None => {
                diesel::insert_into(robots::table)
                    .values((
                        robots::address.eq(&robot.address),
                        robots::first_seen.eq(at),
                        &registered,
                    ))
                    .execute(self.conn)?;
                self.robot_event(
                    EventType::RobotRegistered,
                    &robot.address,
                    robot.at,
                    "first registration",
                )?;
                Some("connected")
            }
            Some(_) if first_time => {
                // Recorded in advance: its first registration is now.
                diesel::update(robots::table.find(&robot.address))
                    .set((robots::first_seen.eq(at), &registered))
                    .execute(self.conn)?;
                self.robot_event(
                    EventType::RobotRegistered,
                    &robot.address,
                    robot.at,
                    "first registration",
                )?;
                Some("connected")
            }
            Some((online, connection, _)) => {
                diesel::update(robots::table.find(&robot.address))
                    .set(&registered)
                    .execute(self.conn)?;
                match (online, connection.as_deref()) {
                    (true, Some(live)) if live == robot.connection_id => None,
                    (true, Some(_)) => Some("replaced"),
                    _ => Some("connected"),
                }
            }
        };
        if let Some(reason) = online_reason {
            self.robot_event(EventType::RobotOnline, &robot.address, robot.at, reason)?;
        }
        Ok(first_time)
    }

    /// Records a robot before it ever connects (offline, `name` as given, its times and
    /// metadata unset until it registers), so that jobs and credentials can be set up for it in
    /// advance. A robot that exists is left as it is. Returns true when it was recorded now.
    pub fn record_robot(
        &mut self,
        address: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let exists = robots::table
            .find(address)
            .select(robots::address)
            .first::<String>(self.conn)
            .optional()?
            .is_some();
        if exists {
            return Ok(false);
        }
        let at = to_micros(at);
        diesel::insert_into(robots::table)
            .values((
                robots::address.eq(address),
                robots::name.eq(name),
                robots::online.eq(false),
                robots::protocol.eq(NEVER_REGISTERED),
                // The columns are not nullable: placeholders until the robot registers.
                robots::first_seen.eq(at),
                robots::last_seen.eq(at),
                robots::metadata.eq("null"),
            ))
            .execute(self.conn)?;
        Ok(true)
    }

    /// An operator records the robot `address` named `name` (before its first registration),
    /// or renames the robot it is. A registration later replaces the name with the one the
    /// robot reports, as it always does. Event: `robot.updated` when something changed.
    pub fn put_robot(
        &mut self,
        address: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<PutRobot, StoreError> {
        // Locked on PostgreSQL: a registration on another instance renames it too.
        let known: Option<String> = crate::connection::locked!(
            &mut *self.conn,
            robots::table.find(address).select(robots::name),
            |q, c| q.first(c).optional()
        )?;
        let outcome = match known {
            None => {
                self.record_robot(address, name, at)?;
                self.robot_event(
                    EventType::RobotUpdated,
                    address,
                    at,
                    "recorded by request, before its first registration",
                )?;
                PutRobot::Created
            }
            Some(old) if old == name => PutRobot::Unchanged,
            Some(old) => {
                diesel::update(robots::table.find(address))
                    .set(robots::name.eq(name))
                    .execute(self.conn)?;
                let reason = format!("renamed by request (it was {old:?})");
                self.robot_event(EventType::RobotUpdated, address, at, &reason)?;
                PutRobot::Renamed
            }
        };
        let robot = load_robot(self.conn, address)?
            .ok_or_else(|| StoreError::Failed(format!("robot {address} vanished")))?;
        Ok(outcome(Box::new(robot)))
    }

    /// Records an event of the robot with its state as it is now.
    pub(crate) fn robot_event(
        &mut self,
        kind: EventType,
        address: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let robot: RobotRecord = robots::table
            .find(address)
            .select(RobotRecord::as_select())
            .first(self.conn)?;
        self.subject_event(kind, format!("robots/{address}"), at, Some(reason), &robot)
    }

    /// `robot.offline` for robots just taken offline, with their state as it is now.
    pub(crate) fn robots_offline(
        &mut self,
        addresses: &[String],
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        for chunk in addresses.chunks(500) {
            let robots: Vec<RobotRecord> = robots::table
                .filter(robots::address.eq_any(chunk))
                .order(robots::address.asc())
                .select(RobotRecord::as_select())
                .load(self.conn)?;
            for robot in &robots {
                let subject = format!("robots/{}", robot.address);
                self.subject_event(EventType::RobotOffline, subject, at, Some(reason), robot)?;
            }
        }
        Ok(())
    }

    /// Several instances: the robot was held by another instance (it reconnected through the
    /// load balancer, or its instance died). The sendings made on that connection and never
    /// confirmed may be lost with it: they are Pending again and due now, so the claim that
    /// follows the registration sends them on this connection. (If the old instance is alive,
    /// its own record of the lost connection finds them changed and leaves them; at worst the
    /// robot gets a package twice, and drops it by its `job_id`.)
    fn take_over(
        &mut self,
        robot: &RobotRegistration,
        policy: &crate::DeliveryPolicy,
    ) -> Result<(), StoreError> {
        let query = robots::table
            .find(&robot.address)
            .select(robots::instance_id);
        let holder: Option<Option<String>> =
            crate::connection::locked!(&mut *self.conn, query, |q, c| q.first(c).optional())?;
        let Some(Some(holder)) = holder else {
            return Ok(());
        };
        if holder == self.instance {
            return Ok(());
        }
        let in_flight =
            crate::instances::unconfirmed(self.conn, std::slice::from_ref(&robot.address))?;
        self.requeue(
            &in_flight,
            robot.at,
            policy,
            Some(robot.at),
            &format!("the robot moved to another server instance (from {holder}) before confirming receipt: sending again"),
        )
    }

    /// Marks the robot offline if `connection_id` is still its live connection: a connection that
    /// was replaced by a newer one must not take the robot offline when it closes. `reason`
    /// says why the connection ended, for its `robot.offline`.
    pub fn robot_disconnected(
        &mut self,
        address: &str,
        connection_id: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let updated = diesel::update(
            robots::table
                .find(address)
                .filter(robots::connection_id.eq(connection_id)),
        )
        .set((
            robots::online.eq(false),
            robots::connection_id.eq(None::<String>),
            robots::instance_id.eq(None::<String>),
            robots::last_seen.eq(to_micros(at)),
            robots::offline_since.eq(Some(to_micros(at))),
        ))
        .execute(self.conn)?;
        if updated > 0 {
            self.robot_event(EventType::RobotOffline, address, at, reason)?;
        }
        Ok(updated > 0)
    }

    /// At start of the only instance (SQLite): nobody is connected yet, whatever the last run
    /// left behind. The robots that were online get a `robot.offline`.
    pub fn mark_all_robots_offline(&mut self, at: DateTime<Utc>) -> Result<usize, StoreError> {
        let offline: Vec<String> = diesel::update(robots::table.filter(robots::online.eq(true)))
            .set((
                robots::online.eq(false),
                robots::connection_id.eq(None::<String>),
                robots::instance_id.eq(None::<String>),
                robots::offline_since.eq(Some(to_micros(at))),
            ))
            .returning(robots::address)
            .get_results(self.conn)?;
        self.robots_offline(&offline, at, "server restarted")?;
        Ok(offline.len())
    }

    /// Robots offline since before `horizon` whose outage was not told yet: told now, as
    /// `robot.unreachable`, once per outage. Returns their addresses.
    pub fn alert_unreachable_robots(
        &mut self,
        horizon: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        // The condition is checked again on each row as it is updated: with several instances,
        // one of them tells.
        let addresses: Vec<String> = diesel::update(
            robots::table
                .filter(robots::online.eq(false))
                .filter(robots::unreachable_alerted.eq(false))
                .filter(robots::offline_since.le(to_micros(horizon))),
        )
        .set(robots::unreachable_alerted.eq(true))
        .returning(robots::address)
        .get_results(self.conn)?;
        for address in &addresses {
            self.robot_event(EventType::RobotUnreachable, address, now, reason)?;
        }
        Ok(addresses)
    }

    pub fn insert_robot_message(
        &mut self,
        robot_address: &str,
        connection_id: &str,
        received_at: DateTime<Utc>,
        value: &str,
    ) -> Result<i64, StoreError> {
        Ok(diesel::insert_into(robot_messages::table)
            .values((
                robot_messages::robot_address.eq(robot_address),
                robot_messages::connection_id.eq(connection_id),
                robot_messages::received_at.eq(to_micros(received_at)),
                robot_messages::value.eq(value),
            ))
            .returning(robot_messages::id)
            .get_result(self.conn)?)
    }

    /// Keeps the robot's `keep` newest messages and deletes the older ones; the number
    /// deleted. Called after each insert, it deletes at most one.
    pub fn trim_robot_messages(
        &mut self,
        robot_address: &str,
        keep: u32,
    ) -> Result<usize, StoreError> {
        // The newest message beyond `keep`, found by walking the (robot_address, id) index
        // from the newest end: it and everything older go.
        let beyond: Option<i64> = robot_messages::table
            .filter(robot_messages::robot_address.eq(robot_address))
            .order(robot_messages::id.desc())
            .offset(i64::from(keep))
            .select(robot_messages::id)
            .first(self.conn)
            .optional()?;
        let Some(beyond) = beyond else {
            return Ok(0);
        };
        Ok(diesel::delete(
            robot_messages::table
                .filter(robot_messages::robot_address.eq(robot_address))
                .filter(robot_messages::id.le(beyond)),
        )
        .execute(self.conn)?)
    }
}

impl ReadConn<'_> {
    pub fn robot(&mut self, address: &str) -> Result<Option<RobotRecord>, StoreError> {
        Ok(robots::table
            .find(address)
            .select(RobotRecord::as_select())
            .first(self.conn)
            .optional()?)
    }

    pub fn robots(&mut self, filter: &RobotFilter) -> Result<Vec<RobotRecord>, StoreError> {
        let mut query = robots::table.into_boxed();
        if let Some(online) = filter.online {
            query = query.filter(robots::online.eq(online));
        }
        if let Some(after) = &filter.after {
            query = query.filter(robots::address.gt(after));
        }
        Ok(query
            .order(robots::address.asc())
            .limit(filter.limit)
            .select(RobotRecord::as_select())
            .load(self.conn)?)
    }

    pub fn count_robots(&mut self) -> Result<(i64, i64), StoreError> {
        let all = robots::table.count().get_result(self.conn)?;
        let online = robots::table
            .filter(robots::online.eq(true))
            .count()
            .get_result(self.conn)?;
        Ok((all, online))
    }

    /// The robot's messages, newest first, with ids below `before` when given.
    pub fn robot_messages(
        &mut self,
        robot_address: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RobotMessageRecord>, StoreError> {
        let mut query = robot_messages::table
            .filter(robot_messages::robot_address.eq(robot_address))
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(robot_messages::id.lt(before));
        }
        Ok(query
            .order(robot_messages::id.desc())
            .limit(limit)
            .select(RobotMessageRecord::as_select())
            .load(self.conn)?)
    }
}
