//! Robot pools (docs/POOLS.md): which pools each robot belongs to, what the API shows of a pool,
//! whether a robot is free, and waking the jobs that wait for a free robot. The assignment
//! itself is part of sending (`sending.rs`), where every due job is decided.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;

use crate::connection::DbConnection;
use crate::events::EventType;
use crate::robots::{RobotRecord, load_robot};
use crate::schema::{jobs, robot_pools, robots};
use crate::time::to_micros;
use crate::transitions::Current;
use crate::{JobStatus, ReadConn, StoreError, WriteTx};

/// Rows per statement (SQLite allows 32,766 bound values).
const CHUNK: usize = 500;

/// A pool as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSummary {
    pub name: String,
    /// Robots that belong to it.
    pub robots: i64,
    /// ... of which online.
    pub online: i64,
    /// ... of which online and free.
    pub free: i64,
    /// Pending pool jobs due and not assigned.
    pub waiting_jobs: i64,
}

/// A robot of a pool, for `GET /api/pools/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    pub address: String,
    pub name: String,
    pub online: bool,
    pub free: bool,
    pub last_seen: DateTime<Utc>,
}

/// The robot as `PUT /api/robots/{address}/pools` left it, and its event's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RobotWithPools {
    #[serde(flatten)]
    pub robot: RobotRecord,
    pub pools: Vec<String>,
}

/// The robots among `addresses` that are busy at `now` (pools.md): a job was sent to them that
/// is still unreported (`Executed`) and younger than `busy_timeout`, or a pool job was assigned
/// to them and not yet sent. Decided from the rows as they are in this transaction.
pub(crate) fn busy_robots(
    conn: &mut DbConnection,
    addresses: &[String],
    now: DateTime<Utc>,
    busy_timeout: TimeDelta,
) -> Result<HashMap<String, Option<i64>>, StoreError> {
    let since = to_micros(now - busy_timeout);
    let mut busy = HashMap::new();
    for chunk in addresses.chunks(CHUNK) {
        // Sent and unreported: busy until the timeout after its sending (the earliest moment
        // the robot is free again by itself is kept, to wake the waiting jobs then).
        let sent: Vec<(Option<String>, Option<i64>)> = jobs::table
            .filter(jobs::robot_address.eq_any(chunk))
            .filter(jobs::status.eq(JobStatus::Executed))
            .filter(jobs::sent_at.gt(since))
            .select((jobs::robot_address, jobs::sent_at))
            .load(conn)?;
        for (address, sent_at) in sent {
            if let (Some(address), Some(sent_at)) = (address, sent_at) {
                let free_at = sent_at + busy_timeout.num_microseconds().unwrap_or(i64::MAX);
                let entry = busy.entry(address).or_insert(Some(free_at));
                if let Some(at) = entry {
                    *at = (*at).max(free_at);
                }
            }
        }
        // Assigned and not sent yet (handed to the instance that holds the robot): busy until
        // it is sent or given back, which wakes the pool.
        let assigned: Vec<Option<String>> = jobs::table
            .filter(jobs::robot_address.eq_any(chunk))
            .filter(jobs::status.eq(JobStatus::Pending))
            .filter(jobs::pool.is_not_null())
            .select(jobs::robot_address)
            .load(conn)?;
        for address in assigned.into_iter().flatten() {
            busy.insert(address, None);
        }
    }
    Ok(busy)
}

/// Several instances (PostgreSQL): the lock that orders deciding on pool jobs against waking
/// them. Without it an instance could read a robot busy and park a job while another instance
/// frees that robot and looks for waiting jobs before the park is committed: the job would wait
/// for the next report. Deciding takes it without waiting (`wait` false: pool jobs another
/// instance is deciding on or waking are looked at again shortly, see sending.rs); waking waits
/// for it, so it sees the parked job, or the decision sees the robot free. One lock for all
/// pools, so that wakers (several in one batch) never take two in different orders. SQLite's
/// one writer orders them already. Transaction-level: released by the commit.
pub(crate) fn lock_pools(conn: &mut DbConnection, wait: bool) -> Result<bool, StoreError> {
    match conn {
        DbConnection::Sqlite(_) => {
            let _ = wait;
            Ok(true)
        }
        #[cfg(feature = "postgres")]
        DbConnection::Pg(conn) => {
            if wait {
                diesel::select(pg::pg_advisory_xact_lock(POOLS_LOCK)).execute(conn)?;
                Ok(true)
            } else {
                Ok(diesel::select(pg::pg_try_advisory_xact_lock(POOLS_LOCK)).get_result(conn)?)
            }
        }
    }
}

/// The key of [`lock_pools`] (the events' lock is another key).
#[cfg(feature = "postgres")]
const POOLS_LOCK: i64 = 0x7270_615f_706f_6f6c; // "rpa_pool"

#[cfg(feature = "postgres")]
mod pg {
    diesel::define_sql_function! {
        fn pg_advisory_xact_lock(key: diesel::sql_types::BigInt);
    }
    diesel::define_sql_function! {
        fn pg_try_advisory_xact_lock(key: diesel::sql_types::BigInt) -> diesel::sql_types::Bool;
    }
}

fn pools_of(conn: &mut DbConnection, address: &str) -> Result<Vec<String>, StoreError> {
    Ok(robot_pools::table
        .filter(robot_pools::robot_address.eq(address))
        .order(robot_pools::pool.asc())
        .select(robot_pools::pool)
        .load(conn)?)
}

fn summaries(
    conn: &mut DbConnection,
    names: &[String],
    now: DateTime<Utc>,
    busy_timeout: TimeDelta,
) -> Result<Vec<(PoolSummary, Vec<PoolMember>)>, StoreError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let members: Vec<(String, String, bool, i64)> = robot_pools::table
            .inner_join(robots::table)
            .filter(robot_pools::pool.eq(name))
            .order(robots::address.asc())
            .select((
                robots::address,
                robots::name,
                robots::online,
                robots::last_seen,
            ))
            .load(conn)?;
        let online: Vec<String> = members
            .iter()
            .filter(|(_, _, online, _)| *online)
            .map(|(address, _, _, _)| address.clone())
            .collect();
        let busy = busy_robots(conn, &online, now, busy_timeout)?;
        let waiting: i64 = jobs::table
            .filter(jobs::pool.eq(name))
            .filter(jobs::status.eq(JobStatus::Pending))
            .filter(jobs::robot_address.is_null())
            .filter(jobs::run_at.le(to_micros(now)))
            .count()
            .get_result(conn)?;
        let robots: Vec<PoolMember> = members
            .into_iter()
            .map(|(address, name, online, last_seen)| PoolMember {
                free: online && !busy.contains_key(&address),
                address,
                name,
                online,
                last_seen: crate::time::from_micros(last_seen),
            })
            .collect();
        out.push((
            PoolSummary {
                name: name.clone(),
                robots: robots.len() as i64,
                online: robots.iter().filter(|r| r.online).count() as i64,
                free: robots.iter().filter(|r| r.free).count() as i64,
                waiting_jobs: waiting,
            },
            robots,
        ));
    }
    Ok(out)
}

impl WriteTx<'_> {
    /// Sets the pools `address` belongs to (replacing them): the robot with its pools, or None
    /// if no robot has that address. Emits `robot.updated` when the membership changed.
    pub fn set_robot_pools(
        &mut self,
        address: &str,
        pools: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<RobotWithPools>, StoreError> {
        // Locked, so that two instances changing the same robot's pools come one after the other.
        let found: Option<String> = crate::connection::locked!(
            &mut *self.conn,
            robots::table.find(address).select(robots::address),
            |q, c| q.first(c).optional()
        )?;
        if found.is_none() {
            return Ok(None);
        }
        let mut wanted: Vec<String> = pools.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let before = pools_of(self.conn, address)?;
        if before != wanted {
            diesel::delete(robot_pools::table.filter(robot_pools::robot_address.eq(address)))
                .execute(self.conn)?;
            // A robot is in a few pools: one row at a time.
            for pool in &wanted {
                diesel::insert_into(robot_pools::table)
                    .values((
                        robot_pools::robot_address.eq(address),
                        robot_pools::pool.eq(pool),
                    ))
                    .execute(self.conn)?;
            }
        }
        let robot =
            load_robot(self.conn, address)?.ok_or_else(|| StoreError::vanished("robot", 0))?;
        let record = RobotWithPools {
            robot,
            pools: wanted,
        };
        if before != record.pools {
            let reason = if record.pools.is_empty() {
                "pools set by request: none".to_owned()
            } else {
                format!("pools set by request: {}", record.pools.join(", "))
            };
            self.subject_event(
                EventType::RobotUpdated,
                format!("robots/{address}"),
                now,
                Some(&reason),
                &record,
            )?;
        }
        Ok(Some(record))
    }

    /// A robot of these pools may have become free (it reported, registered, joined a pool, gave
    /// a job back): the oldest pool jobs waiting in its pools become due now, at most `limit`,
    /// so that the scheduler assigns them. Returns their ids, to wake the scheduler.
    pub fn wake_pools_of(
        &mut self,
        address: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let pools = pools_of(self.conn, address)?;
        if pools.is_empty() {
            return Ok(Vec::new());
        }
        lock_pools(self.conn, true)?;
        let now_micros = to_micros(now);
        // Parked (no wake-up), or waiting for a wake-up later than now. Not a job still backing
        // off after a decline: `pool_waiting_since` is set only on jobs that found no robot.
        let ids: Vec<i64> = jobs::table
            .filter(jobs::pool.eq_any(&pools))
            .filter(jobs::status.eq(JobStatus::Pending))
            .filter(jobs::robot_address.is_null())
            .filter(jobs::pool_waiting_since.is_not_null())
            .filter(jobs::wake_at.is_null().or(jobs::wake_at.gt(now_micros)))
            .order((jobs::run_at.asc(), jobs::id.asc()))
            .select(jobs::id)
            .limit(limit)
            .load(self.conn)?;
        for chunk in ids.chunks(CHUNK) {
            diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
                .set(jobs::wake_at.eq(Some(now_micros)))
                .execute(self.conn)?;
        }
        Ok(ids)
    }

    /// A pool job leaves the queue by request (cancelled) while it holds a wake-up the others
    /// count on: the moment a busy robot's timeout frees it, which was handed to this one job
    /// only, or the robot it was assigned to and not yet sent to. The oldest other job waiting
    /// in its pool takes that wake-up over, or is woken now for the freed robot, so that nobody
    /// waits for the next report instead. Written to the row only: the scheduler reads due
    /// rows again within its lookahead (2 s), so a cancel needs no message to it.
    pub(crate) fn pass_on_pool_wakeup(
        &mut self,
        id: i64,
        job: &Current,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(pool) = &job.pool else {
            return Ok(());
        };
        if let Some(robot) = &job.robot_address {
            // Assigned, not sent yet: its robot is free again.
            self.wake_pools_of(robot, now, crate::sending::WAKE_LIMIT)?;
            return Ok(());
        }
        let now_micros = to_micros(now);
        let Some(at) = job
            .wake_at
            .filter(|at| job.pool_waiting_since.is_some() && *at > now_micros)
        else {
            return Ok(());
        };
        lock_pools(self.conn, true)?;
        let next: Option<i64> = jobs::table
            .filter(jobs::pool.eq(pool))
            .filter(jobs::id.ne(id))
            .filter(jobs::status.eq(JobStatus::Pending))
            .filter(jobs::robot_address.is_null())
            .filter(jobs::pool_waiting_since.is_not_null())
            .filter(jobs::wake_at.is_null().or(jobs::wake_at.gt(at)))
            .order((jobs::run_at.asc(), jobs::id.asc()))
            .select(jobs::id)
            .first(self.conn)
            .optional()?;
        if let Some(next) = next {
            diesel::update(jobs::table.find(next))
                .set(jobs::wake_at.eq(Some(at)))
                .execute(self.conn)?;
        }
        Ok(())
    }
}

impl ReadConn<'_> {
    /// The pools of each robot of `addresses` (missing: none).
    pub fn robot_pools(
        &mut self,
        addresses: &[String],
    ) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let mut pools: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in addresses.chunks(CHUNK) {
            let rows: Vec<(String, String)> = robot_pools::table
                .filter(robot_pools::robot_address.eq_any(chunk))
                .order((robot_pools::robot_address.asc(), robot_pools::pool.asc()))
                .select((robot_pools::robot_address, robot_pools::pool))
                .load(self.conn)?;
            for (address, pool) in rows {
                pools.entry(address).or_default().push(pool);
            }
        }
        Ok(pools)
    }

    /// Every pool a robot belongs to or a job or schedule names, by name.
    pub fn pools(
        &mut self,
        now: DateTime<Utc>,
        busy_timeout: TimeDelta,
    ) -> Result<Vec<PoolSummary>, StoreError> {
        let mut names: HashSet<String> = robot_pools::table
            .select(robot_pools::pool)
            .distinct()
            .load::<String>(self.conn)?
            .into_iter()
            .collect();
        let used: Vec<Option<String>> = jobs::table
            .filter(jobs::pool.is_not_null())
            .filter(jobs::status.eq(JobStatus::Pending))
            .select(jobs::pool)
            .distinct()
            .load(self.conn)?;
        names.extend(used.into_iter().flatten());
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort_unstable();
        Ok(summaries(self.conn, &names, now, busy_timeout)?
            .into_iter()
            .map(|(summary, _)| summary)
            .collect())
    }

    /// One pool with its robots; zeros for a name nothing uses.
    pub fn pool(
        &mut self,
        name: &str,
        now: DateTime<Utc>,
        busy_timeout: TimeDelta,
    ) -> Result<(PoolSummary, Vec<PoolMember>), StoreError> {
        let mut found = summaries(self.conn, &[name.to_owned()], now, busy_timeout)?;
        Ok(found.pop().unwrap_or_else(|| {
            (
                PoolSummary {
                    name: name.to_owned(),
                    robots: 0,
                    online: 0,
                    free: 0,
                    waiting_jobs: 0,
                },
                Vec::new(),
            )
        }))
    }
}
