//! F4: a robot that stops reading. It connects through a proxy whose server-to-robot direction
//! is stalled (with a 4 KiB socket buffer towards the server), while many large packages are
//! pushed at it. Another robot's lateness is measured in a baseline phase, where the same load
//! goes to a robot that reads, and during the stall; the server's RSS is sampled throughout.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use rpa_testkit::HttpClient;
use serde_json::json;

use super::{Env, Load, LoadSpec, check_ledger, report_verdict, wait_all_due, wait_all_online};
use crate::api::{Api, Target, trigger};
use crate::checker::FaultMark;
use crate::clock::{floor_ms, now_us};
use crate::fleet::{Fleet, RobotSpec, SharedLedger, lock};
use crate::proxy::Proxy;
use crate::report::{FaultReport, percentile};
use crate::server::{self, Server, SpecExt};

#[derive(Debug, Clone, Args)]
pub struct F4Args {
    /// The server's --outbound-queue.
    #[arg(long, default_value_t = 16)]
    pub outbound_queue: u32,
    /// The server's --write-timeout.
    #[arg(long, default_value = "2s")]
    pub write_timeout: String,
    /// The server's --write-buffer.
    #[arg(long, default_value = "64KiB")]
    pub write_buffer: String,
    /// Jobs pushed at the slow robot (and, in the baseline, at a robot that reads).
    #[arg(long, default_value_t = 600)]
    pub jobs: u64,
    /// Padding of each pushed package, KiB (a package is at most 32 KiB).
    #[arg(long, default_value_t = 30)]
    pub package_kib: usize,
    /// The most the server's RSS may grow while the slow robot is stalled, MiB.
    #[arg(long, default_value_t = 8)]
    pub rss_bound_mib: u64,
    /// Where the server's RSS must settle once every job was delivered, MiB above the start:
    /// the caches that the burst filled (SQLite's pages in each pooled connection) stay; what
    /// must not happen is growth that stays with the backlog's size.
    #[arg(long, default_value_t = 32)]
    pub rss_settle_mib: u64,
    /// Jobs of the observing robot per phase, one every 100 ms.
    #[arg(long, default_value_t = 40)]
    pub observer_jobs: usize,
}

/// What one phase measured.
struct Phase {
    lateness_ms: Vec<f64>,
    rss_max_kib: u64,
}

/// Posts one observer job every 100 ms (due 400 ms later) while `load` pushes jobs; samples RSS.
async fn phase(
    server: &Server,
    ledger: &SharedLedger,
    observer: &Target,
    label: &str,
    count: usize,
    load: Load,
) -> Phase {
    let mut http = HttpClient::new(server.addr());
    let mut keys = HashSet::new();
    let mut rss_max = server.rss_kib().unwrap_or(0);
    for n in 0..count {
        let key = format!("f4-{label}-observer-{n}");
        let due = floor_ms(now_us() + 400_000);
        let record = trigger(&mut http, &key, observer, due, 0).await;
        lock(ledger).triggers.push(record);
        keys.insert(key);
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            rss_max = rss_max.max(server.rss_kib().unwrap_or(0));
        }
    }
    load.stop().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    rss_max = rss_max.max(server.rss_kib().unwrap_or(0));
    let mut lateness: Vec<f64> = lock(ledger)
        .deliveries
        .iter()
        .filter(|d| d.key.as_ref().is_some_and(|k| keys.contains(k)))
        .filter_map(|d| d.due_us.map(|due| (d.received_us - due) as f64 / 1000.0))
        .collect();
    lateness.sort_by(f64::total_cmp);
    Phase {
        lateness_ms: lateness,
        rss_max_kib: rss_max,
    }
}

fn summary(lateness: &[f64]) -> serde_json::Value {
    json!({
        "n": lateness.len(),
        "p50_ms": percentile(lateness, 50.0),
        "p99_ms": percentile(lateness, 99.0),
        "max_ms": lateness.last().copied().unwrap_or(0.0),
    })
}

pub async fn run(env: &Env, args: &F4Args, report: &mut FaultReport) -> Result<()> {
    let pushed_mib = args.jobs as f64 * args.package_kib as f64 / 1024.0;
    report.note(format!(
        "server with --outbound-queue {} --write-timeout {} --write-buffer {}; {} jobs of {} KiB \
         ({pushed_mib:.0} MiB) are pushed at a robot that reads (baseline) and then at a robot \
         behind a stalled proxy; an observing robot gets a job due every 100 ms in both phases",
        args.outbound_queue, args.write_timeout, args.write_buffer, args.jobs, args.package_kib
    ));
    let dir = env.work_dir("f4")?;
    let spec = server::spec(&env.server_bin, dir.path())
        .flag("--outbound-queue", args.outbound_queue)
        .flag("--write-timeout", &args.write_timeout)
        .flag("--write-buffer", &args.write_buffer)
        .unlimited_robot_rate();
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let proxy = Proxy::start(server.addr(), Some(4096)).await?;
    let ledger = SharedLedger::default();
    let mut fleet = Fleet::new(&server.ws_url(), Arc::clone(&ledger));
    fleet.add(RobotSpec::new(401, false)); // the observer
    fleet.add(RobotSpec::new(402, true)); // reads: the baseline's target
    let mut slow = RobotSpec::new(403, true);
    slow.url = Some(proxy.ws_url());
    fleet.add(slow);
    let targets = fleet.targets();
    let (observer, busy, slow) = (&targets[0], &targets[1], &targets[2]);
    if !wait_all_online(&api, &fleet.addresses(), Duration::from_secs(10)).await? {
        anyhow::bail!("the robots did not come online");
    }
    let padding = args.package_kib * 1024;
    let push = |prefix: &str, target: &Target| {
        let mut spec = LoadSpec::new(prefix, vec![target.clone()], 4, (100, 300));
        spec.padding = padding;
        spec.max_triggers = Some(args.jobs);
        Load::start(server.addr(), spec, &ledger, Arc::clone(&fleet.offset_us))
    };

    let rss_start = server.rss_kib().unwrap_or(0);
    let breakdown_start = server.rss_breakdown();
    let load = push("f4-busy", busy);
    let baseline = phase(
        &server,
        &ledger,
        observer,
        "baseline",
        args.observer_jobs,
        load,
    )
    .await;
    let missing = wait_all_due(&ledger, 0, Duration::from_secs(60)).await;
    if missing > 0 {
        anyhow::bail!("baseline: {missing} jobs not delivered to robots that read");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_stall = server.rss_kib().unwrap_or(0);

    proxy.stall(true);
    let stall_start = now_us();
    let stalled_at = Instant::now();
    let slow_connections = fleet.robots[2].state.connections.load(Ordering::Relaxed);
    let load = push("f4-slow", slow);
    let during = phase(
        &server,
        &ledger,
        observer,
        "stall",
        args.observer_jobs,
        load,
    )
    .await;
    let offline = api
        .wait_online(&slow.address, false, Duration::from_secs(30))
        .await?;
    let offline_after = stalled_at.elapsed();
    let statuses = {
        let jobs = api.all_jobs().await?;
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for job in jobs.values().filter(|j| j.robot == slow.address) {
            *counts.entry(job.status.clone()).or_default() += 1;
        }
        counts
    };
    let slow_closed = api
        .metric("rpa_slow_robots_closed_total")
        .await?
        .unwrap_or(0.0);
    let log = server.log_lines("the robot does not read", 3);

    proxy.stall(false);
    // The robot drains what the buffers held, sees the close, and reconnects.
    let reconnected = super::super::api::wait_for(
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            Ok(fleet.robots[2].state.connections.load(Ordering::Relaxed) > slow_connections)
        },
    )
    .await?;
    lock(&ledger).faults.push(FaultMark {
        label: "stalled reader".to_owned(),
        start_us: stall_start,
        end_us: now_us(),
    });
    let drain = Instant::now();
    let missing = wait_all_due(&ledger, 0, Duration::from_secs(90)).await;
    let drain = drain.elapsed();
    // The server hands freed memory back to the OS every 10 s (glibc's malloc keeps a burst's
    // peak otherwise): what matters is where RSS settles, so give it up to 15 s to get there.
    let settle = Instant::now();
    let bound = args.rss_settle_mib * 1024;
    let mut rss_end = server.rss_kib().unwrap_or(0);
    while rss_end.saturating_sub(rss_start) > bound && settle.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_end = server.rss_kib().unwrap_or(0);
    }
    let settled_after = settle.elapsed();
    let breakdown_end = server.rss_breakdown();
    let wal_bytes = std::fs::metadata(format!("{}-wal", server.database().display()))
        .map(|m| m.len())
        .unwrap_or(0);
    let db_bytes = std::fs::metadata(server.database())
        .map(|m| m.len())
        .unwrap_or(0);
    let queue_full = server
        .log_lines("outbound queue was full", usize::MAX)
        .len();
    let verdict = check_ledger(&api, &ledger, 0, Duration::from_secs(120)).await?;

    report.check(
        "the robot that stopped reading is disconnected",
        offline && slow_closed >= 1.0,
        format!(
            "offline {:.1} s after the stall began; rpa_slow_robots_closed_total {slow_closed}; log: {}",
            offline_after.as_secs_f64(),
            log.first().map_or("(no line)", String::as_str)
        ),
    );
    let bound_kib = args.rss_bound_mib * 1024;
    let growth_stall = during.rss_max_kib.saturating_sub(rss_before_stall);
    report.check(
        "its outbound queue is bounded: RSS growth while it is stalled stays under the bound",
        growth_stall <= bound_kib && pushed_mib >= 2.0 * args.rss_bound_mib as f64,
        format!(
            "RSS +{} KiB during the stall (bound {} KiB) while {pushed_mib:.0} MiB of packages were \
             pushed at it; its jobs at the disconnect: {statuses:?}",
            growth_stall, bound_kib
        ),
    );
    let growth_total = rss_end.saturating_sub(rss_start);
    report.check(
        "server memory does not grow: once every job was delivered, RSS settles near the start",
        growth_total <= args.rss_settle_mib * 1024,
        format!(
            "RSS {} KiB at the start, {} KiB at the end, {:.1} s after the drain (+{} KiB, bound {} KiB); baseline phase peak +{} KiB",
            rss_start,
            rss_end,
            settled_after.as_secs_f64(),
            growth_total,
            args.rss_settle_mib * 1024,
            baseline.rss_max_kib.saturating_sub(rss_start)
        ),
    );
    let (b50, d50) = (
        percentile(&baseline.lateness_ms, 50.0),
        percentile(&during.lateness_ms, 50.0),
    );
    let (bmax, dmax) = (
        baseline.lateness_ms.last().copied().unwrap_or(0.0),
        during.lateness_ms.last().copied().unwrap_or(0.0),
    );
    let (b90, d90) = (
        percentile(&baseline.lateness_ms, 90.0),
        percentile(&during.lateness_ms, 90.0),
    );
    report.check(
        "other robots' latency unchanged (p50 within 2x or +20 ms, p90 within 2x or +50 ms of the baseline)",
        during.lateness_ms.len() == args.observer_jobs
            && d50 <= (2.0 * b50).max(b50 + 20.0)
            && d90 <= (2.0 * b90).max(b90 + 50.0),
        format!(
            "observer lateness p50/p90/max: baseline {b50:.1}/{b90:.1}/{bmax:.1} ms, during the stall {d50:.1}/{d90:.1}/{dmax:.1} ms ({} of {} received)",
            during.lateness_ms.len(),
            args.observer_jobs
        ),
    );
    report.check(
        "after it reads again, every job reaches it (at-least-once)",
        reconnected && missing == 0,
        format!(
            "reconnected: {reconnected}; {missing} due jobs not received; the backlog took {:.1} s \
             to arrive; {queue_full} sendings were given back because its queue was full",
            drain.as_secs_f64()
        ),
    );
    report_verdict(report, &verdict);
    report.figure("lateness_baseline", summary(&baseline.lateness_ms));
    report.figure("lateness_during_stall", summary(&during.lateness_ms));
    report.figure(
        "rss_kib",
        json!({"start": rss_start, "baseline_peak": baseline.rss_max_kib,
               "before_stall": rss_before_stall, "stall_peak": during.rss_max_kib, "end": rss_end}),
    );
    report.figure("offline_after_s", offline_after.as_secs_f64());
    report.figure("backlog_drain_s", drain.as_secs_f64());
    report.figure(
        "rss_breakdown_kib",
        json!({"start": breakdown_start, "end": breakdown_end}),
    );
    report.figure("database_bytes", json!({"db": db_bytes, "wal": wal_bytes}));
    report.figure("queue_full_give_backs", queue_full);
    report.figure("slow_robot_jobs_at_disconnect", statuses);
    report.figure("pushed_mib", pushed_mib);
    fleet.shutdown().await;
    server.stop().await?;
    Ok(())
}
