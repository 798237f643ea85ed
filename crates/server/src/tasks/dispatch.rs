//! Sending packages to robots: what the scheduler finds due, what waited for a robot that just
//! registered, and forced jobs. Every sending is claimed in the database first, handed to the
//! robot's connection, and confirmed once written (see rpa-store's transitions).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rpa_protocol::{RobotAddress, encode_notification};
use rpa_registry::{Outbound, PushError, Registry, Sending, Session};
use rpa_scheduler::{Due, DueKind, DueSource, Wakeup};
use rpa_store::{ChangeOutcome, Claimed, DeliveryPolicy, DueOutcome, Reach, StoreError};
use tokio::sync::mpsc;

use crate::db::Db;
use crate::http::metrics::{Metrics, bump};
use crate::logging::Untrusted;

/// How long an unsent job waits before the scheduler tries again when the robot's queue was
/// full: long enough for the robot to drain some of it.
const FULL_QUEUE_RETRY: TimeDelta = TimeDelta::seconds(1);
/// ... and when the connection was closing: the robot may already have a new one.
const CLOSED_RETRY: TimeDelta = TimeDelta::milliseconds(100);

/// ... and when another instance was deciding on the job (several instances on PostgreSQL).
const LOCKED_RETRY: TimeDelta = TimeDelta::milliseconds(20);

/// A sending the connection wrote, to be confirmed in the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) sending: Sending,
    pub(crate) awaiting_ack: bool,
    pub(crate) at: DateTime<Utc>,
}

#[derive(Clone)]
pub(crate) struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    package_files: Arc<crate::tasks::package_files::PackageFiles>,
    registry: Arc<Registry>,
    policy: DeliveryPolicy,
    metrics: Arc<Metrics>,
    wakeup: std::sync::OnceLock<Wakeup>,
    written: mpsc::UnboundedSender<Written>,
}

impl Dispatcher {
    /// Returns the dispatcher and the receiver of written sendings, to be drained by
    /// [`confirm_written`].
    pub(crate) fn new(
        db: Db,
        package_files: Arc<crate::tasks::package_files::PackageFiles>,
        registry: Arc<Registry>,
        policy: DeliveryPolicy,
        metrics: Arc<Metrics>,
    ) -> (Dispatcher, mpsc::UnboundedReceiver<Written>) {
        let (written, receiver) = mpsc::unbounded_channel();
        let inner = Inner {
            db,
            package_files,
            registry,
            policy,
            metrics,
            wakeup: std::sync::OnceLock::new(),
            written,
        };
        (
            Dispatcher {
                inner: Arc::new(inner),
            },
            receiver,
        )
    }

    /// Connects the dispatcher to the scheduler loop it feeds (they need each other).
    pub(crate) fn set_wakeup(&self, wakeup: Wakeup) {
        let _ = self.inner.wakeup.set(wakeup);
    }

    pub(crate) fn policy(&self) -> &DeliveryPolicy {
        &self.inner.policy
    }

    /// Tells the scheduler that job `id` is due at `at`.
    pub(crate) fn wake(&self, id: i64, at: DateTime<Utc>) {
        if let Some(wakeup) = self.inner.wakeup.get() {
            wakeup.notify(Due::job(id, at));
        }
    }

    /// Tells the scheduler that these jobs are due at `at` (pool jobs woken by a freed robot).
    pub(crate) fn wake_all(&self, ids: &[i64], at: DateTime<Utc>) {
        for id in ids {
            self.wake(*id, at);
        }
    }

    /// A robot may have become free for its pools (it declined a job, or lost a connection
    /// with jobs unconfirmed): the oldest pool jobs waiting there become due now.
    pub(crate) fn wake_pools_of(&self, address: &str) {
        let this = self.clone();
        let robot = address.to_owned();
        let now = Utc::now();
        self.inner.db.submit(
            format!("robot {}", Untrusted(address)),
            "cannot wake its pools' waiting jobs",
            move |tx| tx.wake_pools_of(&robot, now, rpa_store::WAKE_LIMIT),
            move |woken, _| this.wake_all(&woken, now),
        );
    }

    /// Tells the scheduler that schedule `id` has an occurrence at `at`.
    pub(crate) fn wake_schedule(&self, id: i64, at: DateTime<Utc>) {
        if let Some(wakeup) = self.inner.wakeup.get() {
            wakeup.notify(Due::schedule(id, at));
        }
    }

    /// A robot can take packages (it registered, or its queue drained): send what waited for
    /// it, as much as its queue has room for. If more waits, the connection asks again once it
    /// has written these.
    pub(crate) async fn robot_ready(
        &self,
        session: &Session,
        address: &RobotAddress,
        why: &'static str,
    ) {
        let inner = &self.inner;
        let now = Utc::now();
        let robot = address.as_str().to_owned();
        let policy = inner.policy;
        let limit = session.room();
        let claim = inner
            .db
            .write(move |tx| {
                let claim = tx.claim_for_robot(&robot, now, &policy, limit, why)?;
                // It may be free for its pools' waiting jobs too.
                let woken = tx.wake_pools_of(&robot, now, rpa_store::WAKE_LIMIT)?;
                Ok((claim, woken))
            })
            .await;
        match claim {
            Ok((claim, woken)) => {
                self.wake_all(&woken, now);
                if claim.more {
                    log::debug!(
                        "robot {address}: {} waiting jobs sent, more follow as it takes them",
                        claim.outcomes.len()
                    );
                    session.set_backlog();
                }
                self.handle_outcomes(claim.outcomes, now);
            }
            Err(error) => log::error!("robot {address}: cannot claim its waiting jobs: {error}"),
        }
    }

    /// `Pending` becomes due now; sent at once if the robot is online, in the same transaction.
    pub(crate) async fn force(&self, id: i64) -> Result<ChangeOutcome, StoreError> {
        let registry = Arc::clone(&self.inner.registry);
        let policy = self.inner.policy;
        let now = Utc::now();
        let (outcome, claim) = self
            .inner
            .db
            .write(move |tx| {
                let outcome = tx.force_job(id, now)?;
                if !matches!(outcome, ChangeOutcome::Changed(_)) {
                    return Ok((outcome, None));
                }
                let mut reach = Rooms::new(&registry);
                let due = tx
                    .process_due(&[id], now, &mut |address| reach.take(address), &policy)?
                    .into_iter()
                    .next();
                let job = tx.job(id)?.map(Box::new);
                Ok((
                    job.map_or(ChangeOutcome::NotFound, ChangeOutcome::Changed),
                    due,
                ))
            })
            .await?;
        if let Some(due) = claim {
            self.handle_outcomes(vec![due], now);
        }
        Ok(outcome)
    }

    fn handle_outcomes(&self, outcomes: Vec<DueOutcome>, now: DateTime<Utc>) {
        for outcome in outcomes {
            match outcome {
                DueOutcome::Send(claimed) => {
                    // The claim's guard is a wake-up too: if the sending is never confirmed, the
                    // scheduler looks at the job again then.
                    self.wake(claimed.id, now + self.inner.policy.claim_guard);
                    self.send(claimed, now);
                }
                DueOutcome::Failed(reason) => log::warn!("job failed: {reason}"),
                // Another instance is deciding on it right now: look again in a moment.
                DueOutcome::Locked(id) => self.wake(id, now + LOCKED_RETRY),
                // A robot of its pool was freed (a job failed for want of a report).
                DueOutcome::Wake(id) => self.wake(id, now),
                DueOutcome::Parked | DueOutcome::Stale | DueOutcome::Elsewhere => {}
            }
        }
    }

    /// Hands a claimed sending to the robot's connection, or gives it back.
    fn send(&self, claimed: Claimed, now: DateTime<Utc>) {
        let inner = &self.inner;
        let address = RobotAddress::new(&claimed.robot_address);
        let Some(session) = inner.registry.robot(&address) else {
            self.unsend(
                &claimed,
                now,
                CLOSED_RETRY,
                "the robot went offline before the package was written",
            );
            return;
        };
        let Some(robot) = session.robot() else {
            self.unsend(
                &claimed,
                now,
                CLOSED_RETRY,
                "the robot's connection was replaced",
            );
            return;
        };
        // The package as its client wrote it, job_id spliced in (numbers beyond 64 bits too).
        let Some(text) = encode_notification(robot.dialect, &claimed.package, claimed.id) else {
            // Only a hand-edited database gets here: the package was validated on entry.
            log::error!("job {}: stored package is not a JSON object", claimed.id);
            return;
        };
        let sending = Sending {
            job_id: claimed.id,
            attempt: claimed.attempt,
        };
        match session.push(Outbound {
            text,
            job: Some(sending),
        }) {
            Ok(()) => {
                bump(&inner.metrics.deliveries);
                if claimed.attempt > 1 {
                    bump(&inner.metrics.resends);
                }
                // Measured now, after the claim's commit: that is when the package leaves.
                let lateness = (Utc::now() - claimed.run_at)
                    .num_microseconds()
                    .unwrap_or(i64::MAX);
                if claimed.attempt == 1 {
                    inner.metrics.observe_lateness(lateness);
                    if claimed.pool.is_some() {
                        inner.metrics.pool_assignment.observe(lateness);
                    }
                }
                log::info!(
                    "conn={} robot={}: sending job {} (attempt {}), package {}",
                    session.id(),
                    address,
                    claimed.id,
                    claimed.attempt,
                    Untrusted(package_name(&claimed.package).as_deref().unwrap_or("?")),
                );
            }
            Err(PushError::Full) => self.unsend(
                &claimed,
                now,
                FULL_QUEUE_RETRY,
                "the robot's outbound queue was full (it is not reading): retrying",
            ),
            Err(PushError::Closed) => self.unsend(
                &claimed,
                now,
                CLOSED_RETRY,
                "the robot's connection closed before the package was written",
            ),
        }
    }

    fn unsend(
        &self,
        claimed: &Claimed,
        now: DateTime<Utc>,
        after: TimeDelta,
        reason: &'static str,
    ) {
        self.give_back(
            Sending {
                job_id: claimed.id,
                attempt: claimed.attempt,
            },
            now,
            after,
            reason,
        );
    }

    /// A sending that was never written: Pending again, due after `after`.
    pub(crate) fn give_back(
        &self,
        sending: Sending,
        now: DateTime<Utc>,
        after: TimeDelta,
        reason: &'static str,
    ) {
        let retry_at = now + after;
        let this = self.clone();
        let id = sending.job_id;
        self.inner.db.submit(
            JobId(id),
            "cannot record that it was not sent",
            move |tx| tx.unsend(id, sending.attempt, now, retry_at, reason),
            move |unsent, job| {
                if unsent {
                    log::info!("{job}: not sent ({reason})");
                    this.wake(id, retry_at);
                }
            },
        );
    }

    /// After a schedule's occurrence: the instance's package file, the next occurrence.
    fn after_occurrence(&self, id: i64, fired: crate::tasks::recurring_jobs::Fired) {
        if let Some(next) = fired.next {
            self.wake_schedule(id, next);
        }
        let Some(job) = fired.instance else {
            log::info!("schedule {id}: occurrence skipped or ended (see its events)");
            return;
        };
        log::info!(
            "schedule {id}: job {} created for its occurrence at {}: {}",
            job.id,
            crate::http::views::time(job.run_at),
            job.status.as_str()
        );
        self.inner.package_files.notify();
    }

    /// The connection wrote a sending.
    pub(crate) fn written(&self, written: Written) {
        let _ = self.inner.written.send(written);
    }
}

/// `job <id>`, as log lines name a job.
#[derive(Debug, Clone, Copy)]
struct JobId(i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job {}", self.0)
    }
}

fn package_name(package: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(package).ok()?;
    Some(value.get("package_name")?.as_str()?.to_owned())
}

/// The room left in each robot's queue while one write decides on many due jobs: a robot is
/// not handed more than its queue takes, and one whose queue is full is told it has a backlog.
struct Rooms<'a> {
    registry: &'a Registry,
    left: std::collections::HashMap<String, (Option<Arc<Session>>, usize)>,
}

impl<'a> Rooms<'a> {
    fn new(registry: &'a Registry) -> Rooms<'a> {
        Rooms {
            registry,
            left: std::collections::HashMap::new(),
        }
    }

    fn take(&mut self, address: &str) -> Reach {
        let registry = self.registry;
        let (session, left) = self.left.entry(address.to_owned()).or_insert_with(|| {
            let session = registry.robot(&RobotAddress::new(address));
            let room = session.as_ref().map_or(0, |s| s.room());
            (session, room)
        });
        match session {
            None => Reach::Offline,
            Some(session) if *left == 0 => {
                session.set_backlog();
                Reach::Busy
            }
            Some(_) => {
                *left -= 1;
                Reach::Ready
            }
        }
    }
}

/// Records written sendings in batches: one write for everything written since the last one.
///
/// At `stop` it records what was written so far and ends.
pub(crate) async fn confirm_written(
    dispatcher: Dispatcher,
    mut receiver: mpsc::UnboundedReceiver<Written>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let db = dispatcher.inner.db.clone();
    let policy = dispatcher.inner.policy;
    const BATCH: usize = 4096;
    let mut batch = Vec::with_capacity(BATCH);
    let mut stopping = false;
    loop {
        if stopping {
            while let Ok(written) = receiver.try_recv() {
                batch.push(written);
            }
            if batch.is_empty() {
                return;
            }
        } else {
            tokio::select! {
                received = receiver.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
            }
        }
        let written = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        // Sendings to extended robots now wait for an acknowledgement until a deadline; the
        // others, with `--job-report-timeout`, for a report.
        let deadlines: Vec<(i64, DateTime<Utc>)> = written
            .iter()
            .filter_map(|w| {
                if w.awaiting_ack {
                    Some((w.sending.job_id, w.at + policy.ack_timeout))
                } else {
                    policy
                        .report_timeout
                        .map(|timeout| (w.sending.job_id, Utc::now() + timeout))
                }
            })
            .collect();
        let result = db
            .write(move |tx| {
                let sendings: Vec<(i64, i32, bool)> = written
                    .iter()
                    .map(|w| (w.sending.job_id, w.sending.attempt, w.awaiting_ack))
                    .collect();
                tx.mark_written(&sendings, Utc::now(), &policy)
            })
            .await;
        match result {
            Ok(recorded) => {
                dispatcher.inner.metrics.sendings_confirmed.fetch_add(
                    u64::try_from(recorded).unwrap_or(u64::MAX),
                    std::sync::atomic::Ordering::Relaxed,
                );
                for (id, at) in deadlines {
                    dispatcher.wake(id, at);
                }
            }
            Err(error) => {
                // The claims stay unconfirmed: the scheduler looks at them again when their guard
                // expires, so nothing is lost, at worst sent twice.
                log::error!("cannot confirm written sendings: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl DueSource for Dispatcher {
    type Error = StoreError;

    async fn fetch(&self, until: DateTime<Utc>, limit: usize) -> Result<Vec<Due>, StoreError> {
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX);
        let (jobs, schedules) = self
            .inner
            .db
            .read(move |conn| {
                Ok((
                    conn.due_jobs(until, fetch)?,
                    conn.due_schedules(until, fetch)?,
                ))
            })
            .await?;
        let mut due: Vec<Due> = jobs
            .into_iter()
            .map(|row| Due::job(row.id, row.wake_at))
            .chain(schedules.into_iter().map(|(id, at)| Due::schedule(id, at)))
            .collect();
        // Two sources, each complete up to its last row: keep the earliest `limit` of both, so
        // the loop's completeness rule (everything before the last row it got) still holds.
        due.sort_unstable();
        due.truncate(limit);
        Ok(due)
    }

    async fn fire(&self, due: Vec<Due>, now: DateTime<Utc>) {
        let registry = Arc::clone(&self.inner.registry);
        let policy = self.inner.policy;
        let outcomes = self
            .inner
            .db
            .write(move |tx| {
                let mut reach = Rooms::new(&registry);
                let mut fired = Vec::new();
                let mut jobs = Vec::with_capacity(due.len());
                for entry in &due {
                    match entry.kind {
                        DueKind::Job => jobs.push(entry.id),
                        DueKind::Schedule => {
                            let id = entry.id;
                            match tx.savepoint(|tx| {
                                crate::tasks::recurring_jobs::fire(tx, id, now, &policy)
                            }) {
                                Ok(Some(occurrence)) => {
                                    // The instance is due now: send it in this same write.
                                    if let Some(job) = &occurrence.instance {
                                        jobs.push(job.id);
                                    }
                                    fired.push((id, occurrence));
                                }
                                Ok(None) => {}
                                Err(error) => {
                                    log::error!("schedule {id}: cannot process it: {error}")
                                }
                            }
                        }
                    }
                }
                let outcomes =
                    tx.process_due(&jobs, now, &mut |address| reach.take(address), &policy)?;
                Ok((fired, outcomes))
            })
            .await;
        match outcomes {
            Ok((fired, outcomes)) => {
                for (id, occurrence) in fired {
                    self.after_occurrence(id, occurrence);
                }
                self.handle_outcomes(outcomes, now);
            }
            Err(error) => {
                log::error!("cannot process due jobs: {error}");
                // They stay due; the next read finds them. Do not spin on a busy database.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
