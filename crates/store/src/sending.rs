//! Sending: what the scheduler finds due, and what waited for a robot that can take packages
//! again, is claimed here, many jobs per statement.
//!
//! Every job is decided from its current row, read inside the transaction, and from whether its
//! robot can take a package (asked of the registry, also inside the transaction): claim it, park
//! it until its robot can take it, fail it (missed, or out of sendings), or leave it. Then the
//! decisions are applied with one statement per kind for the whole batch, so a second in which
//! 19,000 robots each have a job due costs a few statements, not 19,000 times three.
//!
//! With several instances (PostgreSQL), only the instance that holds a robot's live connection
//! sends to it. The due rows are read `FOR UPDATE SKIP LOCKED`: a row another instance is
//! deciding on right now is not waited for but looked at again a moment later
//! ([`DueOutcome::Locked`]). A job whose robot another instance holds is left as it is, and
//! that instance is told, by a `NOTIFY` that PostgreSQL delivers when this transaction commits
//! ([`DueOutcome::Elsewhere`]; see notify.rs).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;

use crate::connection::{DbConnection, locked};
use crate::events::{EventType, JobChange};
use crate::schema::{jobs, robot_pools, robots};
use crate::time::{from_micros, to_micros};
use crate::transitions::{Current, seconds};
use crate::{Delivery, DeliveryPolicy, JobStatus, StoreError, WriteTx};

/// Rows per statement (SQLite allows 32,766 bound values).
const CHUNK: usize = 500;

/// Waiting pool jobs made due at once when a robot of their pools is freed: one, the oldest, as a
/// freed robot takes one job. (Waking more only makes the others wait again: measured with
/// 20,000 jobs waiting for 2,000 robots, 32 per report made the drain two and a half times
/// slower.)
pub const WAKE_LIMIT: i64 = 1;

/// A job claimed for sending: what the connection needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    /// The Package object as received (JSON).
    pub package: String,
    pub robot_address: String,
    /// This sending's number, the first being 1. Confirmations quote it, so that a confirmation
    /// of an older sending cannot touch a newer one.
    pub attempt: i32,
    pub run_at: DateTime<Utc>,
    /// The pool it was assigned from, for a pool job.
    pub pool: Option<String>,
}

/// Whether a job's robot can take a package now, as the registry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// No live connection.
    Offline,
    /// Connected, but its outbound queue is full: the job waits until the robot takes the
    /// packages before it (the connection says so), instead of being claimed and handed back.
    Busy,
    /// Connected with room in its queue.
    Ready,
}

/// What the look at a due job decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueOutcome {
    /// Claimed: send it now.
    Send(Claimed),
    /// Due, but its robot cannot take it: it waits for the robot to register or to have room.
    Parked,
    /// Given up, with the reason.
    Failed(String),
    /// Nothing to do: the job changed since it was read (cancelled, reported, rescheduled).
    Stale,
    /// Another instance holds the robot's connection: that instance was told to look at the job
    /// (several instances only).
    Elsewhere,
    /// Another instance is deciding on this job at this moment: look again shortly (several
    /// instances only).
    Locked(i64),
    /// Not a decision on a job of the batch: this waiting pool job became due now (a robot of
    /// its pool was freed), and the scheduler must be told.
    Wake(i64),
}

/// What [`WriteTx::claim_for_robot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotClaim {
    pub outcomes: Vec<DueOutcome>,
    /// More jobs wait beyond the limit.
    pub more: bool,
}

/// One job's decision.
enum Decision {
    /// Another instance holds the robot: tell it, change nothing.
    HandOff(String),
    Claim(String),
    Park(&'static str),
    /// Parked as the robot is offline, and woken again when it has been due for
    /// `overdue_after`, to tell (`job.overdue`).
    ParkUntilOverdue(&'static str),
    /// Due for longer than `overdue_after` and still not sent: tell, once, and stay parked.
    Overdue(String),
    Fail(String),
    /// Already parked: nothing changes.
    StayParked,
    /// A confirmed or final job that still carried a `wake_at`: clear it.
    Clear,
    /// A pool job found no free robot: it waits, woken at `wake_at` (a robot's busy timeout
    /// passing, its `job.overdue`, a look again after a lock) or by a report, a registration
    /// or a membership change (`None`). `tell` emits `job.waiting` (the first time only).
    ParkPool {
        reason: String,
        wake_at: Option<i64>,
        tell: bool,
        overdue: bool,
    },
}

fn decide(
    job: &Current,
    now: DateTime<Utc>,
    reach: Reach,
    policy: &DeliveryPolicy,
    why: &str,
) -> Decision {
    match (job.status, job.delivery) {
        (JobStatus::Pending, _) => {
            let late = now - from_micros(job.run_at);
            if let Some(grace) = policy.misfire_grace
                && job.attempts == 0
                && !job.forced
                && late > grace
            {
                return Decision::Fail(format!(
                    "missed: not sent within the misfire grace of {} after its run_at ({} late)",
                    seconds(grace),
                    seconds(late)
                ));
            }
            match reach {
                Reach::Ready => {
                    let attempt = job.attempts + 1;
                    let mut reason =
                        format!("{why} (attempt {attempt} of {})", policy.max_attempts);
                    if job.attempts == 0 && late > TimeDelta::seconds(1) {
                        reason.push_str(&format!(", {} after its run_at", seconds(late)));
                    }
                    Decision::Claim(reason)
                }
                _ if job.wake_at.is_none() => Decision::StayParked,
                Reach::Busy => Decision::Park(
                    "due, but the robot's queue is full: sent as soon as it takes the packages before it",
                ),
                Reach::Offline => {
                    const WAITING: &str =
                        "due, but the robot is offline: waiting for it to connect";
                    match policy.overdue_after {
                        // Only a job never sent is overdue, and it is told once. (A forced job
                        // is due since it was forced, whatever its run_at: it just waits.)
                        Some(after)
                            if job.attempts == 0 && job.overdue_at.is_none() && !job.forced =>
                        {
                            if late >= after {
                                Decision::Overdue(format!(
                                    "due for {} and still not sent: the robot is offline",
                                    seconds(late)
                                ))
                            } else {
                                Decision::ParkUntilOverdue(WAITING)
                            }
                        }
                        _ => Decision::Park(WAITING),
                    }
                }
            }
        }
        // No acknowledgement in time, or a claim never confirmed: the package may not have
        // arrived, so it goes again.
        (JobStatus::Executed, Delivery::AwaitingAck | Delivery::Claimed) => {
            if job.attempts >= policy.max_attempts {
                return Decision::Fail(format!(
                    "not acknowledged after {} sendings, the limit",
                    job.attempts
                ));
            }
            match reach {
                Reach::Ready => Decision::Claim(format!(
                    "resent: no acknowledgement within {} (attempt {} of {})",
                    seconds(policy.ack_timeout),
                    job.attempts + 1,
                    policy.max_attempts
                )),
                Reach::Busy | Reach::Offline => Decision::Park(
                    "not acknowledged, and the robot cannot take it now: resending when it can",
                ),
            }
        }
        // Sent, and no report within `--job-report-timeout`: failed, which frees the robot.
        (JobStatus::Executed, Delivery::Written) => match (policy.report_timeout, job.sent_at) {
            (Some(timeout), Some(sent_at)) if now - from_micros(sent_at) >= timeout => {
                Decision::Fail(format!("no report within {}", seconds(timeout)))
            }
            _ => Decision::Clear,
        },
        _ => Decision::Clear,
    }
}

/// What the choice among a pool's robots found for one job.
enum Assignment {
    /// This instance holds the robot, and its queue has room.
    Local(String),
    /// Another instance holds the robot (several instances).
    Remote { robot: String, holder: String },
    /// No free robot: look again at `retry_at` (a robot's busy timeout passes, or a candidate
    /// was locked by another instance), or when a robot frees (`None`).
    NoneFree { retry_at: Option<i64> },
}

/// How soon to look again when another instance was assigning a candidate robot.
const POOL_LOCKED_RETRY_MICROS: i64 = 50_000;

/// What one batch knows of a pool's robots, read once per pool and batch (a batch of 500 due
/// jobs in a pool of 2,000 robots reads the robots once, not 500 times): the free online robots
/// in the order of the choice rule, and when the earliest busy one is free again by its timeout.
pub(crate) struct PoolState {
    /// (address, holding instance, last assigned), least recently assigned first, ties by
    /// address.
    free: Vec<(String, Option<String>, i64)>,
    /// When each busy robot of the pool is free by `--pool-busy-timeout`, latest first: each is
    /// handed to one waiting job as its wake-up, so a timeout wakes one job, not every one.
    free_at: Vec<i64>,
    /// A candidate was passed over because another instance held its row.
    skipped: bool,
}

fn pool_state(
    conn: &mut DbConnection,
    pool: &str,
    now: DateTime<Utc>,
    policy: &DeliveryPolicy,
) -> Result<PoolState, StoreError> {
    let members: Vec<(String, Option<String>, i64)> = robot_pools::table
        .inner_join(robots::table)
        .filter(robot_pools::pool.eq(pool))
        .filter(robots::online.eq(true))
        .select((
            robots::address,
            robots::instance_id,
            robots::last_assigned_at,
        ))
        .load(conn)?;
    let addresses: Vec<String> = members.iter().map(|(a, _, _)| a.clone()).collect();
    let busy = crate::pools::busy_robots(conn, &addresses, now, policy.pool_busy_timeout)?;
    let mut free: Vec<(String, Option<String>, i64)> = members
        .into_iter()
        .filter(|(address, _, _)| !busy.contains_key(address))
        .collect();
    free.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
    let mut free_at: Vec<i64> = busy.values().flatten().copied().collect();
    free_at.sort_unstable_by(|a, b| b.cmp(a));
    Ok(PoolState {
        free,
        free_at,
        skipped: false,
    })
}

/// The choice rule (docs/POOLS.md): among the online, free robots of the pool, the one assigned
/// a job least recently, ties by lowest address; the robot that gave the job back only when no
/// other is free. With several instances the chosen robot's row is locked (`SKIP LOCKED`: one
/// another instance is assigning right now is passed over) and its busyness read again after
/// the lock, so that two instances never both give a job to one robot. The assignment is
/// written at once (the job's robot, the robot's `last_assigned_at`) and the robot leaves the
/// batch's free list, so the next job of the same batch sees it busy.
#[allow(clippy::too_many_arguments)]
fn assign(
    conn: &mut DbConnection,
    instance: &str,
    job_id: i64,
    job: &Current,
    state: &mut PoolState,
    now: DateTime<Utc>,
    policy: &DeliveryPolicy,
    reach: &mut dyn FnMut(&str) -> Reach,
) -> Result<Assignment, StoreError> {
    let declined_by = job.declined_by.as_deref();
    // The robot that gave this job back goes last (a stable move keeps the others' order).
    let mut order: Vec<usize> = (0..state.free.len()).collect();
    order.sort_by_key(|&i| Some(state.free[i].0.as_str()) == declined_by);
    let shared = conn.shared();
    let mut gone = Vec::new();
    let mut chosen = None;
    for index in order {
        let (address, holder, _) = &state.free[index];
        let holder = holder.as_deref().filter(|h| shared && *h != instance);
        if shared {
            let locked: Option<String> = locked!(
                &mut *conn,
                robots::table
                    .find(address)
                    .filter(robots::online.eq(true))
                    .select(robots::address),
                skip_locked = true,
                |q, c| q.first(c).optional()
            )?;
            if locked.is_none() {
                // Another instance is assigning to it, or it went offline: not this batch's.
                state.skipped = true;
                gone.push(index);
                continue;
            }
            // Read after the lock: an assignment another instance committed meanwhile counts.
            let again = crate::pools::busy_robots(
                conn,
                std::slice::from_ref(address),
                now,
                policy.pool_busy_timeout,
            )?;
            if !again.is_empty() {
                gone.push(index);
                continue;
            }
        }
        if holder.is_none() && reach(address) != Reach::Ready {
            // Its queue is full, or its connection just ended: not free for a new job.
            gone.push(index);
            continue;
        }
        chosen = Some((index, address.clone(), holder.map(str::to_owned)));
        break;
    }
    if let Some((index, address, holder)) = chosen {
        gone.push(index);
        gone.sort_unstable();
        for index in gone.into_iter().rev() {
            state.free.remove(index);
        }
        let now_micros = to_micros(now);
        diesel::update(robots::table.find(&address))
            .set(robots::last_assigned_at.eq(now_micros))
            .execute(conn)?;
        diesel::update(jobs::table.find(job_id))
            .set((
                jobs::robot_address.eq(Some(&address)),
                jobs::pool_waiting_since.eq(None::<i64>),
                jobs::wake_at.eq(Some(now_micros)),
            ))
            .execute(conn)?;
        return Ok(match holder {
            None => Assignment::Local(address),
            Some(holder) => Assignment::Remote {
                robot: address,
                holder,
            },
        });
    }
    gone.sort_unstable();
    for index in gone.into_iter().rev() {
        state.free.remove(index);
    }
    let retry_at = if state.skipped {
        Some(to_micros(now) + POOL_LOCKED_RETRY_MICROS)
    } else {
        state.free_at.pop()
    };
    Ok(Assignment::NoneFree { retry_at })
}

/// The current rows of `ids`, in chunks, locked against other instances' writers: with
/// `skip_locked`, a row another instance holds is left out of the answer.
fn load(
    conn: &mut DbConnection,
    ids: &[i64],
    skip_locked: bool,
) -> Result<HashMap<i64, Current>, StoreError> {
    let mut rows = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let loaded: Vec<(i64, Current)> = locked!(
            &mut *conn,
            jobs::table
                .filter(jobs::id.eq_any(chunk))
                .order(jobs::id.asc())
                .select((jobs::id, Current::as_select())),
            skip_locked = skip_locked,
            |q, c| q.load(c)
        )?;
        rows.extend(loaded);
    }
    Ok(rows)
}

/// Several instances: which instance holds each robot of `rows` that is held by another one
/// than `instance`. Empty on SQLite, whose one instance holds every connected robot.
fn held_elsewhere(
    conn: &mut DbConnection,
    rows: &HashMap<i64, Current>,
    instance: &str,
) -> Result<HashMap<String, String>, StoreError> {
    if !conn.shared() {
        return Ok(HashMap::new());
    }
    let mut addresses: Vec<&str> = rows
        .values()
        .filter_map(|job| job.robot_address.as_deref())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let mut holders = HashMap::new();
    for chunk in addresses.chunks(CHUNK) {
        let held: Vec<(String, Option<String>)> = robots::table
            .filter(robots::address.eq_any(chunk))
            .filter(robots::instance_id.is_not_null())
            .filter(robots::instance_id.ne(instance))
            .select((robots::address, robots::instance_id))
            .load(conn)?;
        holders.extend(
            held.into_iter()
                .filter_map(|(address, holder)| Some((address, holder?))),
        );
    }
    Ok(holders)
}

impl WriteTx<'_> {
    /// The scheduler reached these jobs' `wake_at`. `reach` answers whether a job's robot can
    /// take a package; it is asked inside the transaction, after the job's row was read, and
    /// only for a job that is really due and waiting to be sent, so the decision and the
    /// registry cannot drift apart. Outcomes come in the order of `ids`.
    pub fn process_due(
        &mut self,
        ids: &[i64],
        now: DateTime<Utc>,
        reach: &mut dyn FnMut(&str) -> Reach,
        policy: &DeliveryPolicy,
    ) -> Result<Vec<DueOutcome>, StoreError> {
        let mut rows = load(self.conn, ids, true)?;
        let holders = held_elsewhere(self.conn, &rows, self.instance)?;
        let now_micros = to_micros(now);
        let mut decisions = Vec::with_capacity(ids.len());
        let mut pools: HashMap<String, PoolState> = HashMap::new();
        for id in ids {
            let Some(job) = rows.get_mut(id) else {
                decisions.push((*id, None));
                continue;
            };
            let due = job.wake_at.is_some_and(|wake| wake <= now_micros);
            if !due {
                decisions.push((*id, None));
                continue;
            }
            let waits = matches!(
                (job.status, job.delivery),
                (JobStatus::Pending, _)
                    | (
                        JobStatus::Executed,
                        Delivery::AwaitingAck | Delivery::Claimed
                    )
            );
            if waits
                && let Some(address) = &job.robot_address
                && let Some(holder) = holders.get(address)
            {
                decisions.push((*id, Some(Decision::HandOff(holder.clone()))));
                continue;
            }
            if job.status == JobStatus::Pending
                && let Some(pool) = job.pool.clone()
            {
                let decision = self.decide_pool(*id, job, &pool, &mut pools, now, reach, policy)?;
                decisions.push((*id, Some(decision)));
                continue;
            }
            let reach = match (&job.robot_address, waits) {
                (Some(address), true) => reach(address),
                _ => Reach::Offline,
            };
            decisions.push((
                *id,
                Some(decide(job, now, reach, policy, "sent to the robot")),
            ));
        }
        let mut outcomes = self.apply(decisions, &rows, now, policy)?;
        if self.conn.shared() {
            // A row left out of the locked read is gone, or another instance is deciding on it.
            let missing: Vec<i64> = ids
                .iter()
                .copied()
                .filter(|id| !rows.contains_key(id))
                .collect();
            let mut busy = std::collections::HashSet::new();
            for chunk in missing.chunks(CHUNK) {
                let found: Vec<i64> = jobs::table
                    .filter(jobs::id.eq_any(chunk))
                    .select(jobs::id)
                    .load(self.conn)?;
                busy.extend(found);
            }
            for (id, outcome) in ids.iter().zip(outcomes.iter_mut()) {
                if busy.contains(id) {
                    *outcome = DueOutcome::Locked(*id);
                }
            }
        }
        Ok(outcomes)
    }

    /// A due Pending pool job: sent to the robot it was assigned to if that robot is here and
    /// ready, else (re)assigned by the choice rule, or left waiting for a free robot. `job`
    /// is updated to the assignment, so the claim and its event name the robot.
    #[allow(clippy::too_many_arguments)]
    fn decide_pool(
        &mut self,
        id: i64,
        job: &mut Current,
        pool: &str,
        pools: &mut HashMap<String, PoolState>,
        now: DateTime<Utc>,
        reach: &mut dyn FnMut(&str) -> Reach,
        policy: &DeliveryPolicy,
    ) -> Result<Decision, StoreError> {
        // Assigned here before (handed over by another instance, or a batch ago): send it if
        // the robot can take it now; otherwise it goes back to the pool and is chosen anew.
        if let Some(address) = job.robot_address.clone() {
            if reach(&address) == Reach::Ready {
                return Ok(decide(job, now, Reach::Ready, policy, "sent to the robot"));
            }
            job.robot_address = None;
            diesel::update(jobs::table.find(id))
                .set(jobs::robot_address.eq(None::<String>))
                .execute(self.conn)?;
        }
        // Past the misfire grace: failed as missed, whatever robot is free.
        if let Decision::Fail(reason) = decide(job, now, Reach::Offline, policy, "") {
            return Ok(Decision::Fail(reason));
        }
        if !pools.contains_key(pool) {
            let state = if crate::pools::lock_pools(self.conn, false)? {
                pool_state(self.conn, pool, now, policy)?
            } else {
                // Another instance is deciding on pool jobs or waking them: look again shortly.
                PoolState {
                    free: Vec::new(),
                    free_at: Vec::new(),
                    skipped: true,
                }
            };
            pools.insert(pool.to_owned(), state);
        }
        let state = pools
            .get_mut(pool)
            .ok_or_else(|| StoreError::vanished("pool", id))?;
        match assign(self.conn, self.instance, id, job, state, now, policy, reach)? {
            Assignment::Local(address) => {
                job.robot_address = Some(address);
                job.pool_waiting_since = None;
                let why = format!("assigned to a free robot of pool {pool} and sent");
                Ok(decide(job, now, Reach::Ready, policy, &why))
            }
            Assignment::Remote { robot, holder } => {
                job.robot_address = Some(robot);
                Ok(Decision::HandOff(holder))
            }
            Assignment::NoneFree { retry_at } => {
                let late = now - from_micros(job.run_at);
                let mut overdue = false;
                let mut wake_at = retry_at;
                if let Some(after) = policy.overdue_after
                    && job.attempts == 0
                    && job.overdue_at.is_none()
                    && !job.forced
                {
                    if late >= after {
                        overdue = true;
                    } else {
                        let at = job.run_at + after.num_microseconds().unwrap_or(i64::MAX);
                        wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                    }
                }
                let reason = if overdue {
                    format!(
                        "due for {} and still not sent: no free robot in pool {pool}",
                        seconds(late)
                    )
                } else {
                    format!("no free robot in pool {pool}: waiting for one")
                };
                Ok(Decision::ParkPool {
                    reason,
                    wake_at,
                    tell: job.pool_waiting_since.is_none(),
                    overdue,
                })
            }
        }
    }

    /// A robot can take packages (it just registered, or its queue drained): claim its Pending
    /// jobs that are due (parked while it was away or busy, or due right now), oldest first, at
    /// most `limit`, the room in its queue. `more` tells that others wait beyond the limit.
    pub fn claim_for_robot(
        &mut self,
        robot_address: &str,
        now: DateTime<Utc>,
        policy: &DeliveryPolicy,
        limit: usize,
        why: &str,
    ) -> Result<RobotClaim, StoreError> {
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        // Several instances: the rows are locked, waiting for another instance's writer if it
        // is deciding on one right now (it may be parking it for want of this robot, which only
        // just registered here); skipping it would leave it parked until the next registration.
        // Due: parked (no wake-up), woken by now, or never sent and past its run_at (parked
        // with a wake-up for its `job.overdue`). Not a resend still backing off.
        let now_micros = to_micros(now);
        let query = jobs::table
            .filter(jobs::robot_address.eq(robot_address))
            .filter(jobs::status.eq(JobStatus::Pending))
            .filter(
                jobs::wake_at
                    .is_null()
                    .or(jobs::wake_at.le(now_micros))
                    .or(jobs::attempts.eq(0).and(jobs::run_at.le(now_micros))),
            )
            .order(jobs::id.asc())
            .select(jobs::id)
            .limit(fetch);
        let mut ids: Vec<i64> = locked!(&mut *self.conn, query, |q, c| q.load(c))?;
        let more = ids.len() > limit;
        ids.truncate(limit);
        let rows = load(self.conn, &ids, false)?;
        let decisions = ids
            .iter()
            .map(|id| {
                let decision = rows
                    .get(id)
                    .map(|job| decide(job, now, Reach::Ready, policy, why));
                (*id, decision)
            })
            .collect();
        let outcomes = self.apply(decisions, &rows, now, policy)?;
        Ok(RobotClaim { outcomes, more })
    }

    /// The connections wrote these sendings (job id, sending number, whether an acknowledgement
    /// is awaited) to their robots' sockets. A sending that is no longer the job's claimed one
    /// (handed back, superseded, reported on) is left alone. Returns how many were recorded.
    pub fn mark_written(
        &mut self,
        sendings: &[(i64, i32, bool)],
        now: DateTime<Utc>,
        policy: &DeliveryPolicy,
    ) -> Result<usize, StoreError> {
        let mut groups: HashMap<(i32, bool), Vec<i64>> = HashMap::new();
        for &(id, attempt, awaiting_ack) in sendings {
            groups.entry((attempt, awaiting_ack)).or_default().push(id);
        }
        let mut recorded = 0;
        for ((attempt, awaiting_ack), ids) in groups {
            let (delivery, wake_at) = if awaiting_ack {
                (
                    Delivery::AwaitingAck,
                    Some(to_micros(now + policy.ack_timeout)),
                )
            } else {
                // Woken when `--job-report-timeout` passes without a report.
                (
                    Delivery::Written,
                    policy
                        .report_timeout
                        .map(|timeout| to_micros(now + timeout)),
                )
            };
            for chunk in ids.chunks(CHUNK) {
                recorded += diesel::update(
                    jobs::table
                        .filter(jobs::id.eq_any(chunk))
                        .filter(jobs::status.eq(JobStatus::Executed))
                        .filter(jobs::delivery.eq(Delivery::Claimed))
                        .filter(jobs::attempts.eq(attempt)),
                )
                .set((jobs::delivery.eq(delivery), jobs::wake_at.eq(wake_at)))
                .execute(self.conn)?;
            }
        }
        Ok(recorded)
    }

    /// Applies the decisions: one statement per kind and chunk, and the events in one insert
    /// per chunk. A job without a decision (gone, or not due) is stale.
    fn apply(
        &mut self,
        decisions: Vec<(i64, Option<Decision>)>,
        rows: &HashMap<i64, Current>,
        now: DateTime<Utc>,
        policy: &DeliveryPolicy,
    ) -> Result<Vec<DueOutcome>, StoreError> {
        let now_micros = to_micros(now);
        let mut claims = Vec::new();
        let mut parks = Vec::new();
        let mut parks_until_overdue = Vec::new();
        let mut overdue = Vec::new();
        let mut clears = Vec::new();
        let mut events: Vec<(EventType, i64, JobStatus, i32, String)> = Vec::new();
        let mut outcomes = Vec::with_capacity(decisions.len());
        let mut woken = Vec::new();
        for (id, decision) in decisions {
            let Some(job) = rows.get(&id) else {
                outcomes.push(DueOutcome::Stale);
                continue;
            };
            outcomes.push(match decision {
                None => DueOutcome::Stale,
                Some(Decision::HandOff(holder)) => {
                    crate::notify::hand_off(self.conn, &holder, id, now)?;
                    DueOutcome::Elsewhere
                }
                Some(Decision::Claim(reason)) => {
                    claims.push((outcomes.len(), id));
                    let attempts = job.attempts + 1;
                    events.push((
                        EventType::JobSent,
                        id,
                        JobStatus::Executed,
                        attempts,
                        reason,
                    ));
                    // Filled in below, with the package the claim returns.
                    DueOutcome::Stale
                }
                Some(Decision::Park(reason)) => {
                    parks.push(id);
                    let reason = reason.to_owned();
                    events.push((
                        EventType::JobWaiting,
                        id,
                        JobStatus::Pending,
                        job.attempts,
                        reason,
                    ));
                    DueOutcome::Parked
                }
                Some(Decision::ParkUntilOverdue(reason)) => {
                    parks_until_overdue.push(id);
                    let reason = reason.to_owned();
                    events.push((
                        EventType::JobWaiting,
                        id,
                        JobStatus::Pending,
                        job.attempts,
                        reason,
                    ));
                    DueOutcome::Parked
                }
                Some(Decision::Overdue(reason)) => {
                    overdue.push(id);
                    events.push((
                        EventType::JobOverdue,
                        id,
                        JobStatus::Pending,
                        job.attempts,
                        reason,
                    ));
                    DueOutcome::Parked
                }
                Some(Decision::StayParked) => DueOutcome::Parked,
                Some(Decision::Fail(reason)) => {
                    self.fail(id, job.status, now, &reason)?;
                    // A job failed after its sending (no report in time) frees its robot.
                    if job.status == JobStatus::Executed
                        && let Some(robot) = &job.robot_address
                    {
                        woken.extend(self.wake_pools_of(robot, now, WAKE_LIMIT)?);
                    }
                    DueOutcome::Failed(reason)
                }
                Some(Decision::Clear) => {
                    clears.push(id);
                    DueOutcome::Stale
                }
                Some(Decision::ParkPool {
                    reason,
                    wake_at,
                    tell,
                    overdue,
                }) => {
                    diesel::update(jobs::table.find(id))
                        .set((
                            jobs::delivery.eq(Delivery::Idle),
                            jobs::wake_at.eq(wake_at),
                            jobs::pool_waiting_since
                                .eq(Some(job.pool_waiting_since.unwrap_or(now_micros))),
                            // The row is locked (or the writer is alone): the value read is
                            // still the stored one.
                            jobs::overdue_at.eq(if overdue {
                                Some(now_micros)
                            } else {
                                job.overdue_at
                            }),
                            jobs::updated_at.eq(now_micros),
                        ))
                        .execute(self.conn)?;
                    if overdue {
                        events.push((
                            EventType::JobOverdue,
                            id,
                            JobStatus::Pending,
                            job.attempts,
                            reason,
                        ));
                    } else if tell {
                        events.push((
                            EventType::JobWaiting,
                            id,
                            JobStatus::Pending,
                            job.attempts,
                            reason,
                        ));
                    }
                    DueOutcome::Parked
                }
            });
        }
        let claim_ids: Vec<i64> = claims.iter().map(|(_, id)| *id).collect();
        let mut packages: HashMap<i64, String> = HashMap::with_capacity(claims.len());
        for chunk in claim_ids.chunks(CHUNK) {
            let claimed: Vec<(i64, String)> =
                diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
                    .set((
                        jobs::status.eq(JobStatus::Executed),
                        jobs::delivery.eq(Delivery::Claimed),
                        jobs::attempts.eq(jobs::attempts + 1),
                        jobs::wake_at.eq(Some(to_micros(now + policy.claim_guard))),
                        jobs::sent_at.eq(Some(now_micros)),
                        jobs::updated_at.eq(now_micros),
                    ))
                    .returning((jobs::id, jobs::package))
                    .get_results(self.conn)?;
            packages.extend(claimed);
        }
        for chunk in parks.chunks(CHUNK) {
            diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
                .set((
                    jobs::status.eq(JobStatus::Pending),
                    jobs::delivery.eq(Delivery::Idle),
                    jobs::wake_at.eq(None::<i64>),
                    jobs::updated_at.eq(now_micros),
                ))
                .execute(self.conn)?;
        }
        if let Some(after) = policy.overdue_after {
            // Woken again once due for `after`, to tell if it is still waiting then.
            let overdue_micros = after.num_microseconds().unwrap_or(i64::MAX);
            for chunk in parks_until_overdue.chunks(CHUNK) {
                diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
                    .set((
                        jobs::status.eq(JobStatus::Pending),
                        jobs::delivery.eq(Delivery::Idle),
                        jobs::wake_at.eq((jobs::run_at + overdue_micros).nullable()),
                        jobs::updated_at.eq(now_micros),
                    ))
                    .execute(self.conn)?;
            }
        }
        for chunk in overdue.chunks(CHUNK) {
            diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
                .set((
                    jobs::wake_at.eq(None::<i64>),
                    jobs::overdue_at.eq(Some(now_micros)),
                ))
                .execute(self.conn)?;
        }
        for chunk in clears.chunks(CHUNK) {
            diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
                .set(jobs::wake_at.eq(None::<i64>))
                .execute(self.conn)?;
        }
        for (kind, id, to, attempts, reason) in &events {
            if let Some(job) = rows.get(id) {
                let change = JobChange {
                    id: *id,
                    from: Some(job.status),
                    to: *to,
                    attempts: *attempts,
                    robot_address: job.robot_address.as_deref(),
                    last_error: job.last_error.as_deref(),
                };
                self.job_event(*kind, change, now, reason);
            }
        }
        for (index, id) in claims {
            if let (Some(package), Some(job)) = (packages.remove(&id), rows.get(&id))
                && let Some(robot_address) = job.robot_address.clone()
            {
                outcomes[index] = DueOutcome::Send(Claimed {
                    id,
                    package,
                    robot_address,
                    attempt: job.attempts + 1,
                    run_at: from_micros(job.run_at),
                    pool: job.pool.clone(),
                });
            }
        }
        outcomes.extend(woken.into_iter().map(DueOutcome::Wake));
        Ok(outcomes)
    }
}
