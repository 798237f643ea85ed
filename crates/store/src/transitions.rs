//! The delivery state machine: every change a job goes through after its creation, except
//! the sending itself (claims, in `sending.rs`).
//!
//! Each operation reads the job's current row and decides inside the writer's transaction, so a
//! decision is never made on a stale copy: a cancel that committed first wins over a sending that
//! was about to start, and a report that raced its own sending is still recorded.
//!
//! Sending is at-least-once. A job is *claimed* (Executed, delivery `Claimed`, with a `wake_at`
//! guard) before its package is handed to the robot's connection; the connection then confirms
//! that the frame was written (`mark_written`) or hands it back (`unsend`). A crash between the
//! two leaves the claim in the database, and `recover_in_flight` turns it back into a Pending job
//! at the next start, so the package is sent again rather than lost.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;

use crate::connection::DbConnection;

use crate::events::{EventType, JobChange};
use crate::jobs::load_job;
use crate::schema::jobs;
use crate::time::to_micros;
use crate::{Delivery, JobRecord, JobStatus, StoreError, WriteTx};

/// The rules of sending, from the server's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Sendings of one job at most, the first included.
    pub max_attempts: i32,
    /// How long an extended robot has to acknowledge a package before it is sent again.
    pub ack_timeout: TimeDelta,
    /// How long a claim may stay unconfirmed before the scheduler looks at the job again.
    pub claim_guard: TimeDelta,
    /// A job first sent later than this after its `run_at` fails as missed instead.
    pub misfire_grace: Option<TimeDelta>,
    /// A job due this long and never sent (its robot offline) is told once as `job.overdue`;
    /// `None` tells nothing.
    pub overdue_after: Option<TimeDelta>,
    /// A robot that was sent a job and has not reported is busy for pool jobs this long
    /// (`--pool-busy-timeout`, docs/POOLS.md).
    pub pool_busy_timeout: TimeDelta,
    /// A job sent and unreported this long fails ("no report within ..."); `None`: never
    /// (`--job-report-timeout`).
    pub report_timeout: Option<TimeDelta>,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            max_attempts: 5,
            ack_timeout: TimeDelta::seconds(30),
            claim_guard: TimeDelta::seconds(60),
            misfire_grace: None,
            overdue_after: Some(TimeDelta::minutes(5)),
            pool_busy_timeout: TimeDelta::minutes(15),
            report_timeout: None,
        }
    }
}

impl DeliveryPolicy {
    /// Back-off before resending after the `attempts`-th sending was declined: 1 s, 2 s, 4 s, ...
    /// capped at 60 s.
    pub fn backoff(attempts: i32) -> TimeDelta {
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(6);
        TimeDelta::seconds((1_i64 << exponent).min(60))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    Updated {
        from: JobStatus,
        to: JobStatus,
    },
    UnknownJob,
    /// The job belongs to another robot: a robot may only report on its own jobs.
    NotThisRobot,
    /// The job is not in a state a report can change (never sent, or already final).
    NotReportable(JobStatus),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Acknowledged,
    /// A duplicate or late acknowledgement: the sending was already confirmed.
    AlreadyConfirmed,
    UnknownJob,
    NotThisRobot,
    NotAwaiting(JobStatus),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclineOutcome {
    /// Sent again after `delay`, as sending number `attempt`.
    Resend {
        job_id: i64,
        attempt: i32,
        delay: TimeDelta,
    },
    /// The limit of sendings is reached: the job failed.
    GaveUp { job_id: i64 },
    /// No sent job of this robot matches.
    NoJob,
}

/// The result of a cancel or force request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    Changed(Box<JobRecord>),
    NotFound,
    /// The job's status forbids the change.
    Conflict(JobStatus),
}

/// The columns of a job's row a transition decides on.
#[derive(Queryable, Selectable)]
#[diesel(table_name = jobs, check_for_backend(crate::connection::MultiBackend))]
pub(crate) struct Current {
    pub(crate) status: JobStatus,
    pub(crate) delivery: Delivery,
    pub(crate) attempts: i32,
    pub(crate) forced: bool,
    /// Microseconds, as stored: compared with others as they are.
    pub(crate) run_at: i64,
    pub(crate) wake_at: Option<i64>,
    /// `None` while a pool job has no robot.
    pub(crate) robot_address: Option<String>,
    pub(crate) last_error: Option<String>,
    /// When `job.overdue` was told, if it was.
    pub(crate) overdue_at: Option<i64>,
    pub(crate) pool: Option<String>,
    /// The robot that last gave this pool job back: chosen again only when no other is free.
    pub(crate) declined_by: Option<String>,
    /// Due and waiting for a free robot of its pool since then.
    pub(crate) pool_waiting_since: Option<i64>,
    /// When it was last sent.
    pub(crate) sent_at: Option<i64>,
}

/// The job's row as a transition decides on it. With several instances the row is locked until
/// the transaction ends, so that another instance's decision on it (a claim, a report, a cancel)
/// comes wholly before or wholly after this one, never in between the read and the write.
pub(crate) fn current(conn: &mut DbConnection, id: i64) -> Result<Option<Current>, StoreError> {
    Ok(crate::connection::locked!(
        &mut *conn,
        jobs::table.find(id).select(Current::as_select()),
        |q, c| q.first(c).optional()
    )?)
}

/// The job's row while sending number `attempt` of it is claimed and unconfirmed: what a
/// confirmation or a hand-back may change, and nothing newer.
#[diesel::dsl::auto_type]
fn claimed_sending(id: i64, attempt: i32) -> _ {
    let executed: JobStatus = JobStatus::Executed;
    let claimed: Delivery = Delivery::Claimed;
    jobs::table
        .find(id)
        .filter(jobs::status.eq(executed))
        .filter(jobs::delivery.eq(claimed))
        .filter(jobs::attempts.eq(attempt))
}

/// Bounds text that came from a robot before it goes into a reason or `last_error`.
fn bounded(text: &str) -> String {
    const MAX: usize = 1000;
    match text.char_indices().nth(MAX) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}...", &text[..cut]),
    }
}

pub(crate) fn seconds(delta: TimeDelta) -> String {
    format!("{:.3} s", delta.num_milliseconds() as f64 / 1000.0)
}

/// What a job's update left of its changing state: read back by the update itself
/// (`RETURNING`), so its event records the row as it is, not as the caller assumed it.
#[derive(Debug, Queryable)]
pub(crate) struct After {
    pub(crate) attempts: i32,
    pub(crate) robot_address: Option<String>,
    pub(crate) last_error: Option<String>,
}

/// The columns of [`After`], in its order.
pub(crate) const AFTER: (jobs::attempts, jobs::robot_address, jobs::last_error) =
    (jobs::attempts, jobs::robot_address, jobs::last_error);

/// A pool job that was given back (declined, never confirmed, not written) returns to its pool:
/// no robot until it is assigned again, and `by` (the robot that had it) chosen again only when
/// no other robot is free. A job addressed to one robot is left as it is.
pub(crate) fn release_to_pool(
    conn: &mut DbConnection,
    id: i64,
    by: Option<&str>,
) -> Result<bool, StoreError> {
    let released = diesel::update(jobs::table.find(id).filter(jobs::pool.is_not_null()))
        .set((
            jobs::robot_address.eq(None::<String>),
            jobs::declined_by.eq(by),
        ))
        .execute(conn)?;
    Ok(released > 0)
}

impl WriteTx<'_> {
    pub(crate) fn set_status(
        &mut self,
        id: i64,
        status: JobStatus,
        delivery: Delivery,
        wake_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<After, StoreError> {
        Ok(diesel::update(jobs::table.find(id))
            .set((
                jobs::status.eq(status),
                jobs::delivery.eq(delivery),
                jobs::wake_at.eq(wake_at.map(to_micros)),
                jobs::updated_at.eq(to_micros(now)),
            ))
            .returning(AFTER)
            .get_result(self.conn)?)
    }

    /// Records a job's change as its event, with the state `after` holds.
    pub(crate) fn changed_job(
        &mut self,
        kind: EventType,
        id: i64,
        (from, to): (JobStatus, JobStatus),
        after: &After,
        at: DateTime<Utc>,
        reason: &str,
    ) {
        let change = JobChange {
            id,
            from: Some(from),
            to,
            attempts: after.attempts,
            robot_address: after.robot_address.as_deref(),
            last_error: after.last_error.as_deref(),
        };
        self.job_event(kind, change, at, reason);
    }

    pub(crate) fn fail(
        &mut self,
        id: i64,
        from: JobStatus,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let after: After = diesel::update(jobs::table.find(id))
            .set((
                jobs::status.eq(JobStatus::Failed),
                jobs::delivery.eq(Delivery::Idle),
                jobs::wake_at.eq(None::<i64>),
                jobs::last_error.eq(Some(error)),
                jobs::updated_at.eq(to_micros(now)),
            ))
            .returning(AFTER)
            .get_result(self.conn)?;
        self.changed_job(
            EventType::JobFailed,
            id,
            (from, JobStatus::Failed),
            &after,
            now,
            error,
        );
        Ok(())
    }

    /// Sending `attempt` was never written (the connection closed first, or the robot's queue
    /// was full): the job is Pending again and due at `retry_at`, when the scheduler sends it on
    /// whatever connection the robot has then.
    pub fn unsend(
        &mut self,
        id: i64,
        attempt: i32,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let after: Option<After> = diesel::update(claimed_sending(id, attempt))
            .set((
                jobs::status.eq(JobStatus::Pending),
                jobs::delivery.eq(Delivery::Idle),
                jobs::attempts.eq(attempt - 1),
                jobs::wake_at.eq(Some(to_micros(retry_at))),
                jobs::updated_at.eq(to_micros(now)),
            ))
            .returning(AFTER)
            .get_result(self.conn)
            .optional()?;
        let Some(after) = after else {
            return Ok(false);
        };
        release_to_pool(self.conn, id, None)?;
        self.changed_job(
            EventType::JobRequeued,
            id,
            (JobStatus::Executed, JobStatus::Pending),
            &after,
            now,
            reason,
        );
        Ok(true)
    }

    /// An extended robot acknowledged receipt of the job.
    pub fn acknowledge(
        &mut self,
        robot_address: &str,
        id: i64,
        now: DateTime<Utc>,
        policy: &DeliveryPolicy,
    ) -> Result<AckOutcome, StoreError> {
        let Some(job) = current(self.conn, id)? else {
            return Ok(AckOutcome::UnknownJob);
        };
        if job.robot_address.as_deref() != Some(robot_address) {
            return Ok(AckOutcome::NotThisRobot);
        }
        match (job.status, job.delivery) {
            (JobStatus::Executed, Delivery::Claimed | Delivery::AwaitingAck) => {
                // Woken when `--job-report-timeout` passes without a report.
                let report_by = policy.report_timeout.map(|timeout| now + timeout);
                let after =
                    self.set_status(id, JobStatus::Executed, Delivery::Written, report_by, now)?;
                self.changed_job(
                    EventType::JobAcknowledged,
                    id,
                    (JobStatus::Executed, JobStatus::Executed),
                    &after,
                    now,
                    "acknowledged by the robot",
                );
                Ok(AckOutcome::Acknowledged)
            }
            (JobStatus::Executed | JobStatus::Succeeded | JobStatus::Failed, _) => {
                Ok(AckOutcome::AlreadyConfirmed)
            }
            (status, _) => Ok(AckOutcome::NotAwaiting(status)),
        }
    }

    /// The robot reported success or failure of a job it was sent.
    pub fn report(
        &mut self,
        robot_address: &str,
        id: i64,
        success: bool,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReportOutcome, StoreError> {
        let Some(job) = current(self.conn, id)? else {
            return Ok(ReportOutcome::UnknownJob);
        };
        if job.robot_address.as_deref() != Some(robot_address) {
            return Ok(ReportOutcome::NotThisRobot);
        }
        // A Pending job that was sent before is waiting for a resend: the robot ran it after all.
        let reportable = job.status == JobStatus::Executed
            || (job.status == JobStatus::Pending && job.attempts > 0);
        if !reportable {
            return Ok(ReportOutcome::NotReportable(job.status));
        }
        let (to, reason, last_error) = if success {
            (
                JobStatus::Succeeded,
                "the robot reported success".to_owned(),
                None,
            )
        } else {
            let detail = message.map(bounded);
            let reason = match &detail {
                Some(detail) => format!("the robot reported failure: {detail}"),
                None => "the robot reported failure".to_owned(),
            };
            (JobStatus::Failed, reason.clone(), Some(reason))
        };
        // One statement either way: a success leaves `last_error` as it was.
        let reported = (
            jobs::status.eq(to),
            jobs::delivery.eq(Delivery::Written),
            jobs::wake_at.eq(None::<i64>),
            jobs::updated_at.eq(to_micros(now)),
        );
        let after: After = match last_error {
            None => diesel::update(jobs::table.find(id))
                .set(reported)
                .returning(AFTER)
                .get_result(self.conn)?,
            Some(error) => diesel::update(jobs::table.find(id))
                .set((reported, jobs::last_error.eq(Some(error))))
                .returning(AFTER)
                .get_result(self.conn)?,
        };
        let kind = if success {
            EventType::JobSucceeded
        } else {
            EventType::JobFailed
        };
        self.changed_job(kind, id, (job.status, to), &after, now, &reason);
        Ok(ReportOutcome::Updated {
            from: job.status,
            to,
        })
    }

    /// The robot could not take a package: resend its most recent sending with that package name
    /// (any name when `package_name` is empty) after a back-off, or give up at the limit.
    pub fn decline(
        &mut self,
        robot_address: &str,
        package_name: &str,
        now: DateTime<Utc>,
        policy: &DeliveryPolicy,
    ) -> Result<DeclineOutcome, StoreError> {
        let mut query = jobs::table
            .filter(jobs::robot_address.eq(robot_address))
            .filter(jobs::status.eq(JobStatus::Executed))
            .into_boxed();
        if !package_name.is_empty() {
            query = query.filter(jobs::package_name.eq(package_name));
        }
        let found: Option<(i64, i32, Option<String>)> = query
            .order((jobs::sent_at.desc(), jobs::id.desc()))
            .select((jobs::id, jobs::attempts, jobs::pool))
            .first(self.conn)
            .optional()?;
        let Some((id, attempts, pool)) = found else {
            return Ok(DeclineOutcome::NoJob);
        };
        if attempts >= policy.max_attempts {
            let reason = format!(
                "the robot declined the package; {attempts} sendings, the limit, were made"
            );
            self.fail(id, JobStatus::Executed, now, &reason)?;
            return Ok(DeclineOutcome::GaveUp { job_id: id });
        }
        let delay = DeliveryPolicy::backoff(attempts);
        let after: After = diesel::update(jobs::table.find(id))
            .set((
                jobs::status.eq(JobStatus::Pending),
                jobs::delivery.eq(Delivery::Idle),
                jobs::wake_at.eq(Some(to_micros(now + delay))),
                jobs::last_error.eq(Some("the robot declined the package")),
                jobs::updated_at.eq(to_micros(now)),
            ))
            .returning(AFTER)
            .get_result(self.conn)?;
        release_to_pool(self.conn, id, Some(robot_address))?;
        let reason = match &pool {
            Some(pool) => format!(
                "the robot declined the package: back to pool {pool} in {} (attempt {} of {})",
                seconds(delay),
                attempts + 1,
                policy.max_attempts
            ),
            None => format!(
                "the robot declined the package: resending in {} (attempt {} of {})",
                seconds(delay),
                attempts + 1,
                policy.max_attempts
            ),
        };
        self.changed_job(
            EventType::JobRequeued,
            id,
            (JobStatus::Executed, JobStatus::Pending),
            &after,
            now,
            &reason,
        );
        Ok(DeclineOutcome::Resend {
            job_id: id,
            attempt: attempts + 1,
            delay,
        })
    }

    /// A robot's connection ended before the robot confirmed these sendings (job id, sending
    /// number): an extended robot did not acknowledge them, or a field robot did not answer the
    /// ping that followed them. Each is Pending again and due at once, so the scheduler sends it
    /// on the robot's next connection (or parks it until there is one); at the limit of
    /// sendings it fails. A job the robot reported on meanwhile is left alone. Returns the jobs
    /// changed and their new status.
    pub fn connection_lost(
        &mut self,
        sendings: &[(i64, i32)],
        now: DateTime<Utc>,
        policy: &DeliveryPolicy,
    ) -> Result<Vec<(i64, JobStatus)>, StoreError> {
        let mut changed = Vec::with_capacity(sendings.len());
        for &(id, attempt) in sendings {
            let Some(job) = current(self.conn, id)? else {
                continue;
            };
            let unconfirmed = job.status == JobStatus::Executed
                && matches!(
                    job.delivery,
                    Delivery::Claimed | Delivery::AwaitingAck | Delivery::Written
                )
                && job.attempts == attempt;
            if !unconfirmed {
                continue;
            }
            if attempt >= policy.max_attempts {
                let reason = format!(
                    "the connection ended before the robot confirmed receipt; {attempt} sendings, the limit, were made"
                );
                self.fail(id, JobStatus::Executed, now, &reason)?;
                changed.push((id, JobStatus::Failed));
            } else if let (Some(pool), Some(robot)) = (job.pool.as_deref(), &job.robot_address) {
                // A pool job goes back to its pool after the resend back-off.
                let delay = DeliveryPolicy::backoff(attempt);
                let after = self.set_status(
                    id,
                    JobStatus::Pending,
                    Delivery::Idle,
                    Some(now + delay),
                    now,
                )?;
                release_to_pool(self.conn, id, Some(robot))?;
                let reason = format!(
                    "the connection ended before the robot confirmed receipt: back to pool {pool} in {}",
                    seconds(delay)
                );
                self.changed_job(
                    EventType::JobRequeued,
                    id,
                    (JobStatus::Executed, JobStatus::Pending),
                    &after,
                    now,
                    &reason,
                );
                changed.push((id, JobStatus::Pending));
            } else {
                let after =
                    self.set_status(id, JobStatus::Pending, Delivery::Idle, Some(now), now)?;
                self.changed_job(
                    EventType::JobRequeued,
                    id,
                    (JobStatus::Executed, JobStatus::Pending),
                    &after,
                    now,
                    "the connection ended before the robot confirmed receipt: sending again",
                );
                changed.push((id, JobStatus::Pending));
            }
        }
        Ok(changed)
    }

    /// `Pending` -> `Cancelled`.
    pub fn cancel_job(&mut self, id: i64, now: DateTime<Utc>) -> Result<ChangeOutcome, StoreError> {
        let Some(job) = current(self.conn, id)? else {
            return Ok(ChangeOutcome::NotFound);
        };
        if job.status != JobStatus::Pending {
            return Ok(ChangeOutcome::Conflict(job.status));
        }
        self.pass_on_pool_wakeup(id, &job, now)?;
        let after = self.set_status(id, JobStatus::Cancelled, Delivery::Idle, None, now)?;
        self.changed_job(
            EventType::JobCancelled,
            id,
            (JobStatus::Pending, JobStatus::Cancelled),
            &after,
            now,
            "cancelled by request",
        );
        self.changed(id)
    }

    /// A Pending job becomes due now, whatever its `run_at`, and the misfire grace no longer
    /// applies to it.
    pub fn force_job(&mut self, id: i64, now: DateTime<Utc>) -> Result<ChangeOutcome, StoreError> {
        let Some(job) = current(self.conn, id)? else {
            return Ok(ChangeOutcome::NotFound);
        };
        if job.status != JobStatus::Pending {
            return Ok(ChangeOutcome::Conflict(job.status));
        }
        let after: After = diesel::update(jobs::table.find(id))
            .set((
                jobs::forced.eq(true),
                jobs::wake_at.eq(Some(to_micros(now))),
                jobs::updated_at.eq(to_micros(now)),
            ))
            .returning(AFTER)
            .get_result(self.conn)?;
        self.changed_job(
            EventType::JobForced,
            id,
            (JobStatus::Pending, JobStatus::Pending),
            &after,
            now,
            "forced by request: due now",
        );
        self.changed(id)
    }

    fn changed(&mut self, id: i64) -> Result<ChangeOutcome, StoreError> {
        Ok(match load_job(self.conn, id)? {
            Some(job) => ChangeOutcome::Changed(Box::new(job)),
            None => ChangeOutcome::NotFound,
        })
    }

    /// At start: sendings that were under way when the last process stopped may not have reached
    /// their robot. They become Pending and wait for their robot (every robot is offline at
    /// start), or fail if that sending was the last one allowed.
    pub fn recover_in_flight(
        &mut self,
        now: DateTime<Utc>,
        policy: &DeliveryPolicy,
    ) -> Result<usize, StoreError> {
        let in_flight: Vec<(i64, i32)> = jobs::table
            .filter(jobs::delivery.eq_any([Delivery::Claimed, Delivery::AwaitingAck]))
            .filter(jobs::status.eq(JobStatus::Executed))
            .select((jobs::id, jobs::attempts))
            .load(self.conn)?;
        let count = in_flight.len();
        self.requeue(
            &in_flight,
            now,
            policy,
            None,
            "the server stopped before the sending was confirmed: resending when the robot connects",
        )?;
        Ok(count)
    }
}
