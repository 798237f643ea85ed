//! The faults F1-F10 and what they share: where the binaries are, trigger load, the final
//! check, the database integrity check.

pub mod f01_kill;
pub mod f02_drop_before_ack;
pub mod f03_silent_field_robot;
pub mod f04_slow_robot;
pub mod f05_db_busy;
pub mod f06_unwritable;
pub mod f07_clock_jump;
pub mod f08_sigstop;
pub mod f09_sigterm;
pub mod f10_downtime;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use rpa_testkit::HttpClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{Api, Target, trigger};
use crate::checker::{Context, Verdict};
use crate::clock::{floor_ms, now_us};
use crate::fleet::{SharedLedger, lock};
use crate::report::FaultReport;
use crate::server::WorkDir;

/// What every fault needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Env {
    pub server_bin: PathBuf,
    pub robot_bin: PathBuf,
    /// Parent of the working folders (default: the system's temporary folder).
    pub work_dir: Option<PathBuf>,
    pub keep_dirs: bool,
    /// libfaketime's shared library, when found.
    pub libfaketime: Option<PathBuf>,
}

impl Env {
    pub fn work_dir(&self, label: &str) -> Result<WorkDir> {
        WorkDir::new(self.work_dir.as_deref(), label, self.keep_dirs)
    }
}

/// A small xorshift generator: random enough to vary timings, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(salt: u64) -> Rng {
        let seed = (now_us() as u64) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low + 1)
    }
}

/// How a trigger load behaves.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub clients: usize,
    pub targets: Vec<Target>,
    /// Trigger keys are `{prefix}-{n}`.
    pub prefix: String,
    /// Due between these many milliseconds from now (on the server's timeline).
    pub due_ms: (u64, u64),
    /// Package padding in bytes.
    pub padding: usize,
    /// Stop after this many triggers in all.
    pub max_triggers: Option<u64>,
    /// Pause between one client's triggers.
    pub pause: Duration,
}

impl LoadSpec {
    pub fn new(prefix: &str, targets: Vec<Target>, clients: usize, due_ms: (u64, u64)) -> LoadSpec {
        LoadSpec {
            clients,
            targets,
            prefix: prefix.to_owned(),
            due_ms,
            padding: 0,
            max_triggers: None,
            pause: Duration::ZERO,
        }
    }
}

/// Concurrent HTTP clients posting triggers until stopped, every answer in the ledger.
pub struct Load {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pub sent: Arc<AtomicU64>,
}

impl Load {
    /// `offset_us` is the server's clock offset (libfaketime), read at each trigger.
    pub fn start(
        addr: std::net::SocketAddr,
        spec: LoadSpec,
        ledger: &SharedLedger,
        offset_us: Arc<AtomicI64>,
    ) -> Load {
        let (stop, _) = watch::channel(false);
        let sent = Arc::new(AtomicU64::new(0));
        let spec = Arc::new(spec);
        let tasks = (0..spec.clients)
            .map(|client| {
                let spec = Arc::clone(&spec);
                let ledger = Arc::clone(ledger);
                let sent = Arc::clone(&sent);
                let offset_us = Arc::clone(&offset_us);
                let mut stopped = stop.subscribe();
                tokio::spawn(async move {
                    let mut http = HttpClient::new(addr).timeout(Duration::from_secs(30));
                    let mut rng = Rng::new(client as u64 + 1);
                    loop {
                        if *stopped.borrow() {
                            return;
                        }
                        let n = sent.fetch_add(1, Ordering::Relaxed);
                        if spec.max_triggers.is_some_and(|max| n >= max) {
                            return;
                        }
                        let target = &spec.targets[n as usize % spec.targets.len()];
                        let delay_us = rng.range(spec.due_ms.0, spec.due_ms.1) as i64 * 1_000;
                        let due = floor_ms(now_us() + offset_us.load(Ordering::Relaxed) + delay_us);
                        let key = format!("{}-{n}", spec.prefix);
                        let request = trigger(&mut http, &key, target, due, spec.padding);
                        // Stopping abandons a request only between requests: an answer that
                        // arrives is always recorded.
                        let record = request.await;
                        let pause = match record.answer {
                            // The server is down: do not spin.
                            crate::checker::Answer::NoAnswer { .. } => Duration::from_millis(50),
                            // Busy or full: come back after Retry-After (1 s), as clients should.
                            crate::checker::Answer::Refused {
                                status: 503 | 507, ..
                            } => Duration::from_secs(1),
                            _ => spec.pause,
                        };
                        lock(&ledger).triggers.push(record);
                        if !pause.is_zero() {
                            tokio::select! {
                                () = tokio::time::sleep(pause) => {}
                                _ = stopped.changed() => return,
                            }
                        }
                    }
                })
            })
            .collect();
        Load { stop, tasks, sent }
    }

    /// Stops the clients and waits for their last answers.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Runs the checker against what the server shows now.
pub async fn check_ledger(
    api: &Api,
    ledger: &SharedLedger,
    offset_us: i64,
    in_flight_window: Duration,
) -> Result<Verdict> {
    let jobs = api.all_jobs().await?;
    let online: HashSet<String> = api.online_robots().await?.into_iter().collect();
    let context = Context {
        jobs,
        online,
        now_us: now_us() + offset_us,
        in_flight_window_us: in_flight_window.as_micros() as i64,
        due_grace_us: 2_000_000,
    };
    let ledger = lock(ledger).clone();
    Ok(ledger.check(&context))
}

/// Waits until every accepted trigger is due (on the server's clock) and received by its
/// robot, at most `limit` after the last due moment; how many are still missing.
pub async fn wait_all_due(ledger: &SharedLedger, offset_us: i64, limit: Duration) -> usize {
    let last_due = lock(ledger)
        .triggers
        .iter()
        .filter(|t| t.job_id().is_some())
        .map(|t| t.due_us)
        .max()
        .unwrap_or(0);
    let wait = last_due - (now_us() + offset_us);
    if wait > 0 {
        tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    }
    wait_delivered(ledger, offset_us, limit).await
}

/// Waits until every accepted trigger already due has been received by its robot, at most
/// `limit`; how many are still missing.
pub async fn wait_delivered(ledger: &SharedLedger, offset_us: i64, limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let missing = {
            let ledger = lock(ledger);
            let received: HashSet<i64> = ledger.deliveries.iter().map(|d| d.job_id).collect();
            let now = now_us() + offset_us;
            ledger
                .triggers
                .iter()
                .filter_map(|t| t.job_id().map(|id| (id, t.due_us)))
                .filter(|(id, due)| *due <= now && !received.contains(id))
                .count()
        };
        if missing == 0 || tokio::time::Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The checker's shared rules as checks of a report, and its figures.
pub fn report_verdict(report: &mut FaultReport, verdict: &Verdict) {
    report_verdict_as(report, "", verdict);
}

/// [`report_verdict`] for one part of a fault: `label` names its checks and figures.
pub fn report_verdict_as(report: &mut FaultReport, label: &str, verdict: &Verdict) {
    let name = |rule: &str| {
        if label.is_empty() {
            rule.to_owned()
        } else {
            format!("{label}: {rule}")
        }
    };
    report.figure(&name("checker"), verdict.figures());
    report.check(
        &name("every trigger that got a 2xx exists afterwards (none lost)"),
        verdict.lost() == 0 && verdict.accepted > 0,
        format!("{} accepted, {} lost", verdict.accepted, verdict.lost()),
    );
    report.check(
        &name("nothing delivered before its due moment"),
        verdict.early.is_empty(),
        format!(
            "{} of {} deliveries early",
            verdict.early.len(),
            verdict.deliveries
        ),
    );
    report.check(
        &name("duplicates only for jobs in flight at a fault"),
        verdict.unexplained_duplicates() == 0,
        format!(
            "{} duplicated jobs explained by a fault, {} unexplained",
            verdict.explained_duplicates(),
            verdict.unexplained_duplicates()
        ),
    );
    let problems = verdict.problems();
    report.check(
        &name("every accepted trigger accounted for (delivered, pending, cancelled or failed with a reason)"),
        problems.is_empty(),
        if problems.is_empty() {
            format!("{:?}", verdict.fates)
        } else {
            problems.join("; ")
        },
    );
}

#[derive(QueryableByName)]
struct IntegrityRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    integrity_check: String,
}

/// `PRAGMA integrity_check` on the database file (the server must be stopped): `"ok"` or the
/// problems SQLite lists.
pub async fn integrity_check(database: &Path) -> Result<String> {
    let path = database.to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = SqliteConnection::establish(&path)?;
        let rows: Vec<IntegrityRow> =
            diesel::sql_query("PRAGMA integrity_check").load(&mut conn)?;
        Ok(rows
            .into_iter()
            .map(|row| row.integrity_check)
            .collect::<Vec<_>>()
            .join("; "))
    })
    .await?
}

/// Waits until every robot is online in the API; whether they all were within `limit`.
pub async fn wait_all_online(api: &Api, addresses: &[String], limit: Duration) -> Result<bool> {
    for address in addresses {
        if !api.wait_online(address, true, limit).await? {
            return Ok(false);
        }
    }
    Ok(true)
}
