//! F5: another connection holds SQLite's write lock (`BEGIN IMMEDIATE` through diesel on the
//! server's database file) while triggers arrive and jobs fall due.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use rpa_testkit::HttpClient;
use serde_json::json;

use super::{Env, Load, LoadSpec, check_ledger, report_verdict, wait_all_due, wait_all_online};
use crate::api::{Api, trigger};
use crate::checker::{Answer, FaultMark};
use crate::clock::{floor_ms, now_us};
use crate::fleet::{Fleet, RobotSpec, SharedLedger, lock};
use crate::report::FaultReport;
use crate::server::{self, Server, SpecExt};

#[derive(Debug, Clone, Args)]
pub struct F5Args {
    /// How long the write lock is held.
    #[arg(long, default_value_t = 5)]
    pub lock_secs: u64,
    /// A second lock held longer than the server's busy timeout (10 s), where 503s are
    /// expected; 0 skips it.
    #[arg(long, default_value_t = 12)]
    pub long_lock_secs: u64,
    /// Concurrent clients posting triggers around the lock.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
}

/// Holds `BEGIN IMMEDIATE` for `hold` on a thread of its own; returns once the lock is taken
/// with the moment it was, and a handle that ends when it is released.
async fn hold_lock(
    database: &Path,
    hold: Duration,
) -> Result<(i64, tokio::task::JoinHandle<Result<i64>>)> {
    let path = database.to_string_lossy().into_owned();
    let (taken, taken_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::task::spawn_blocking(move || -> Result<i64> {
        let mut conn = SqliteConnection::establish(&path)?;
        conn.batch_execute("PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE;")?;
        let _ = taken.send(now_us());
        std::thread::sleep(hold);
        conn.batch_execute("ROLLBACK;")?;
        Ok(now_us())
    });
    match taken_rx.await {
        Ok(at) => Ok((at, handle)),
        Err(_) => match handle.await? {
            Err(error) => Err(error),
            Ok(_) => anyhow::bail!("the lock was never taken"),
        },
    }
}

struct LockRun {
    label: String,
    lock_from_us: i64,
    lock_to_us: i64,
    /// Jobs due while the lock was held: (job id, due).
    due_during: Vec<(i64, i64)>,
}

async fn run_lock(
    server: &Server,
    fleet: &Fleet,
    ledger: &SharedLedger,
    label: &str,
    hold: Duration,
    clients: usize,
) -> Result<LockRun> {
    // Jobs that fall due while the lock is held.
    let mut http = HttpClient::new(server.addr());
    let target = fleet.targets()[0].clone();
    let mut due_during = Vec::new();
    let start = now_us() + 700_000;
    let steps = hold.as_secs().max(2);
    for n in 0..steps {
        let due = floor_ms(start + (n as i64 * hold.as_micros() as i64) / steps as i64 + 300_000);
        let record = trigger(&mut http, &format!("f5-{label}-due-{n}"), &target, due, 0).await;
        if let Some(id) = record.job_id() {
            due_during.push((id, due));
        }
        lock(ledger).triggers.push(record);
    }
    // The lock is taken before the load starts: SQLite's busy handler polls, so a connection
    // waiting for the lock beside a server committing without pause can starve for seconds and
    // take it only after the jobs above fell due. The load then meets the lock from its start.
    let (lock_from_us, holder) = hold_lock(&server.database(), hold).await?;
    let spec = LoadSpec::new(
        &format!("f5-{label}"),
        fleet.targets(),
        clients,
        (500, 3000),
    );
    let load = Load::start(server.addr(), spec, ledger, Arc::clone(&fleet.offset_us));
    let lock_to_us = holder.await??;
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.stop().await;
    lock(ledger).faults.push(FaultMark {
        label: format!("write lock {label}"),
        start_us: lock_from_us,
        end_us: lock_to_us,
    });
    Ok(LockRun {
        label: label.to_owned(),
        lock_from_us,
        lock_to_us,
        due_during,
    })
}

fn judge(report: &mut FaultReport, run: &LockRun, ledger: &SharedLedger) {
    let ledger = lock(ledger);
    let prefix = format!("f5-{}", run.label);
    let during: Vec<_> = ledger
        .triggers
        .iter()
        .filter(|t| t.key.starts_with(&prefix))
        .filter(|t| t.sent_us < run.lock_to_us && t.answered_us > run.lock_from_us)
        .collect();
    let answered_late = during
        .iter()
        .filter(|t| t.job_id().is_some() && t.answered_us >= run.lock_to_us)
        .count();
    let longest_wait_ms = during
        .iter()
        .map(|t| (t.answered_us - t.sent_us) / 1000)
        .max()
        .unwrap_or(0);
    let mut bad = Vec::new();
    let mut unavailable = 0;
    for t in &during {
        match &t.answer {
            Answer::Accepted { .. } => {}
            Answer::Refused {
                status: 503,
                problem: true,
                retry_after: true,
                ..
            } => unavailable += 1,
            other => bad.push(format!("{}: {other:?}", t.key)),
        }
    }
    report.check(
        &format!("{}: requests during the lock wait, or get 503 with Retry-After (problem+json)", run.label),
        !during.is_empty() && bad.is_empty(),
        format!(
            "{} requests overlapped the {:.1} s lock: {} answered 2xx after waiting (longest wait {} ms), \
             {unavailable} got 503 + Retry-After, {} other{}",
            during.len(),
            (run.lock_to_us - run.lock_from_us) as f64 / 1e6,
            answered_late,
            longest_wait_ms,
            bad.len(),
            bad.first().map(|b| format!(" ({b})")).unwrap_or_default()
        ),
    );
    let received: std::collections::HashMap<i64, i64> = ledger
        .deliveries
        .iter()
        .map(|d| (d.job_id, d.received_us))
        .collect();
    let due_in_lock: Vec<&(i64, i64)> = run
        .due_during
        .iter()
        .filter(|(_, due)| *due >= run.lock_from_us && *due < run.lock_to_us)
        .collect();
    let resumed: Vec<f64> = due_in_lock
        .iter()
        .filter_map(|(id, _)| received.get(id))
        .map(|at| (*at - run.lock_to_us) as f64 / 1e6)
        .collect();
    let worst = resumed.iter().copied().fold(f64::MIN, f64::max);
    report.check(
        &format!("{}: the scheduler resumes: jobs due during the lock are delivered after it", run.label),
        !due_in_lock.is_empty() && resumed.len() == due_in_lock.len() && worst <= 5.0,
        format!(
            "{} jobs fell due during the lock, {} delivered, the last {:.2} s after the lock was released",
            due_in_lock.len(),
            resumed.len(),
            if resumed.is_empty() { 0.0 } else { worst }
        ),
    );
    report.figure(
        &format!("lock_{}", run.label),
        json!({"lock_s": (run.lock_to_us - run.lock_from_us) as f64 / 1e6,
               "requests_overlapping": during.len(), "answered_2xx_after_lock": answered_late,
               "longest_wait_ms": longest_wait_ms, "answered_503": unavailable,
               "other_answers": bad.len(), "due_during_lock": due_in_lock.len(),
               "delivered_after_release_s": resumed}),
    );
}

pub async fn run(env: &Env, args: &F5Args, report: &mut FaultReport) -> Result<()> {
    report.note(format!(
        "a second SQLite connection (diesel) holds BEGIN IMMEDIATE on the server's database for {} s \
         (then {} s, past the server's 10 s busy timeout) while {} clients post triggers and jobs fall due",
        args.lock_secs, args.long_lock_secs, args.clients
    ));
    let dir = env.work_dir("f5")?;
    let spec = server::spec(&env.server_bin, dir.path()).unlimited_robot_rate();
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let ledger = SharedLedger::default();
    let mut fleet = Fleet::new(&server.ws_url(), Arc::clone(&ledger));
    fleet.add(RobotSpec::new(501, false));
    fleet.add(RobotSpec::new(502, true));
    if !wait_all_online(&api, &fleet.addresses(), Duration::from_secs(10)).await? {
        anyhow::bail!("the robots did not come online");
    }
    let started = Instant::now();
    let short = run_lock(
        &server,
        &fleet,
        &ledger,
        "short",
        Duration::from_secs(args.lock_secs),
        args.clients,
    )
    .await?;
    let long = if args.long_lock_secs > 0 {
        Some(
            run_lock(
                &server,
                &fleet,
                &ledger,
                "long",
                Duration::from_secs(args.long_lock_secs),
                args.clients,
            )
            .await?,
        )
    } else {
        None
    };
    let missing = wait_all_due(&ledger, 0, Duration::from_secs(30)).await;
    let verdict = check_ledger(&api, &ledger, 0, Duration::from_secs(1)).await?;
    judge(report, &short, &ledger);
    if let Some(long) = &long {
        judge(report, long, &ledger);
    }
    report_verdict(report, &verdict);
    report.check(
        "no 2xx without commit, nothing stored for a refused trigger",
        verdict.lost() == 0 && verdict.refused_but_stored.is_empty(),
        format!(
            "{} accepted, {} lost, {} refused ({:?}) of which {} stored anyway",
            verdict.accepted,
            verdict.lost(),
            verdict.refused_by_status.values().sum::<usize>(),
            verdict.refused_by_status,
            verdict.refused_but_stored.len()
        ),
    );
    report.check(
        "every due job delivered once the lock is gone",
        missing == 0,
        format!("{missing} due jobs not received 30 s after the last lock"),
    );
    report.figure("phase_s", started.elapsed().as_secs_f64());
    fleet.shutdown().await;
    server.stop().await?;
    Ok(())
}
