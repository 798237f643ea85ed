//! P9: a fan-out through one pool (docs/POOLS.md). R robots, all in one pool, report success on
//! each package; J pool jobs are due at once. Each robot takes one job at a time (a robot is busy
//! until it reports), so the jobs wait in the pool and are assigned as reports free robots. A
//! run passes when every job is Succeeded, each delivered exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hyper::body::Bytes;
use rpa_testkit::Trigger;
use rpa_testkit::http::Method;

use super::{fleet_spec, register_fleet, with_target};
use crate::cli::P9Args;
use crate::http;
use crate::metrics::{self, histogram_quantile};
use crate::report::Report;
use crate::stats::{Summary, rate};
use crate::trigger::{Job, JobMaker, PACKAGE_NAME, drive, now_us, rfc3339_micros};
use crate::wire::robot_address;

pub(super) const TARGET: &str =
    "2,000 robots in one pool, 20,000 pool jobs due at once: all delivered once and reported";

const POOL: &str = "p9";

/// A trigger for the pool, due at `at_us`, with `due_us` in the package for the robot.
fn pool_body(at_us: i64) -> Bytes {
    let mut trigger = Trigger::new(PACKAGE_NAME, &format!("loadgen/{PACKAGE_NAME}.std"))
        .package_field("due_us", at_us)
        .schedule(serde_json::json!({"at": rfc3339_micros(at_us)}))
        .to_json();
    trigger["Robot"] = serde_json::json!({"pool": POOL});
    Bytes::from(trigger.to_string())
}

pub(super) async fn run(args: &P9Args) -> Result<Report> {
    let mut report = Report::new("p9-pool", TARGET);
    report.param("robots", args.robots);
    report.param("jobs", args.jobs);
    report.param("clients", args.clients);
    report.param("lead_s", args.lead.as_secs_f64());
    // A robot reports every package at once, and with few robots for many jobs that is more
    // messages per second than the server's per-robot limit (--robot-rate) allows a real robot:
    // a started server gets it lifted unless the command line sets it.
    let mut common = args.common.clone();
    if common.url.is_none()
        && !common
            .server_args
            .iter()
            .any(|arg| arg.starts_with("--robot-rate") || arg.starts_with("--robot-burst"))
    {
        common.server_args.extend([
            "--robot-rate=100000".to_owned(),
            "--robot-burst=100000".to_owned(),
        ]);
    }
    let common = &common;
    with_target(common, "p9", &mut report, async |target, report| {
        let mut http = http::client(target.addr);
        let spec = fleet_spec(common, target, args.robots, true);
        let (mut fleet, _) =
            register_fleet(spec, common, &mut http, args.register_timeout, report).await?;
        // Every robot into the pool.
        let joined_at = Instant::now();
        let body = Bytes::from(serde_json::json!({ "pools": [POOL] }).to_string());
        for index in 0..args.robots {
            let path = format!(
                "/api/robots/{}/pools",
                robot_address(&common.robot_prefix, index)
            );
            let answer = http
                .request(Method::PUT, &path, Some(body.clone()), &[])
                .await?;
            if !answer.is_success() {
                bail!("PUT {path}: {} {}", answer.status, answer.text());
            }
        }
        report.figure(
            "pool membership set (PUT per robot)",
            joined_at.elapsed().as_secs_f64(),
            "s",
        );
        let before = metrics::fetch(&mut http).await?;
        let succeeded_before = before.jobs("Succeeded");
        let jobs = args.jobs as u64;
        // T: a whole second, at least `lead` ahead: every job is due then.
        let lead_us = args.lead.as_micros() as i64;
        let t_us = (now_us() + lead_us).div_euclid(1_000_000) * 1_000_000 + 1_000_000;
        let maker: JobMaker = Arc::new(move |seq| {
            (seq < jobs).then(|| Job {
                body: pool_body(t_us),
                not_before: None,
                due_us: Some(t_us),
            })
        });
        let started = Instant::now();
        let result = drive(target.instances(), args.clients, None, true, maker).await;
        let created = result.created();
        report.figure("pool jobs created (201)", created, "count");
        report.figure(
            "creation time",
            started.elapsed().as_secs_f64(),
            "s",
        );
        let last_answer = result.accepted.iter().map(|a| a.answered_us).max().unwrap_or(0);
        if last_answer > t_us {
            report.fail(format!(
                "measurement invalid: jobs were still being created {:.3} s after T; raise --lead",
                (last_answer - t_us) as f64 / 1e6
            ));
        }
        // From T on: every job is due.
        let wait = (t_us - now_us()).max(0) as u64;
        tokio::time::sleep(Duration::from_micros(wait)).await;
        let cpu_before = target.cpu_seconds();
        let start_us = t_us;
        if created < jobs {
            report.fail(format!("{} of {jobs} triggers were refused", jobs - created));
            for (sample, count) in &result.samples {
                report.note(format!("{count}× {sample}"));
            }
        }
        let mut done_after = None;
        let mut last = before.clone();
        let deadline = Instant::now() + args.timeout;
        while Instant::now() < deadline {
            last = metrics::fetch(&mut http).await?;
            if last.jobs("Succeeded").saturating_sub(succeeded_before) >= created {
                done_after = Some((now_us() - start_us) as f64 / 1e6);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match done_after {
            Some(after) => {
                // /metrics counts jobs at most every 5 s: this bounds the time from above.
                report.figure("all Succeeded (server count, read every 5 s at most), after T", after, "s");
            }
            None => report.fail(format!(
                "only {} of {created} pool jobs Succeeded {:?} after T",
                last.jobs("Succeeded").saturating_sub(succeeded_before),
                args.timeout
            )),
        }
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            if let Some(bound) =
                histogram_quantile(&before, &last, "rpa_pool_assignment_seconds", q)
            {
                report.figure(
                    &format!("due -> sent to a robot {label} (server histogram, bucket bound)"),
                    bound,
                    "s",
                );
            }
        }
        let failed = last.jobs("Failed").saturating_sub(before.jobs("Failed"));
        if failed > 0 {
            report.fail(format!("{failed} jobs ended Failed"));
        }
        let deliveries = fleet.collect().await?;
        let mut seen: HashMap<i64, u32> = HashMap::with_capacity(deliveries.len());
        let mut per_robot: HashMap<u32, u64> = HashMap::new();
        let mut latency = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            let count = seen.entry(delivery.job_id).or_default();
            *count += 1;
            *per_robot.entry(delivery.robot).or_default() += 1;
            if *count == 1
                && let Some(due) = delivery.due_us
            {
                latency.push(delivery.received_us - due);
            }
        }
        // The hand-off: a robot reports the moment it receives, so while jobs wait in the pool
        // the gap between one robot's consecutive packages is its report's commit, the next
        // assignment's commit and the sending, measured on its own (no queueing in it).
        let mut by_robot: HashMap<u32, Vec<i64>> = HashMap::new();
        for delivery in &deliveries {
            by_robot.entry(delivery.robot).or_default().push(delivery.received_us);
        }
        let mut hand_offs = Vec::with_capacity(deliveries.len());
        for received in by_robot.values_mut() {
            received.sort_unstable();
            hand_offs.extend(received.windows(2).map(|pair| pair[1] - pair[0]));
        }
        report.latency(
            "a robot's package -> its next package (report + assignment + sending)",
            Summary::of(hand_offs).as_ref(),
        );
        let duplicates = deliveries.len() - seen.len();
        if let Some(last_us) = deliveries.iter().map(|d| d.received_us).max() {
            let after = (last_us - start_us) as f64 / 1e6;
            report.figure("all delivered (robot side), after T", after, "s");
            report.figure("pool jobs delivered/s (T to the last delivery)", rate(seen.len() as u64, after), "1/s");
            if let (Some(before), Some(now)) = (cpu_before, target.cpu_seconds()) {
                let busy = (now_us() - start_us) as f64 / 1e6;
                report.figure("server CPU, T to the end", 100.0 * (now - before) / busy.max(1e-9), "% of one core");
            }
        }
        report.latency("due -> package received (queueing included)", Summary::of(latency).as_ref());
        report.figure("packages received by robots", deliveries.len(), "count");
        report.figure("robots that received packages", per_robot.len(), "robots");
        report.figure("duplicate deliveries", duplicates, "count");
        if duplicates > 0 {
            report.fail(format!("{duplicates} pool jobs were delivered twice"));
        }
        if (seen.len() as u64) < created {
            report.fail(format!(
                "{} pool jobs never reached a robot",
                created - seen.len() as u64
            ));
        }
        let stats = fleet.stats().await?;
        if stats.unexpected_drops > 0 {
            report.fail(format!(
                "{} unexpected disconnections: {:?}",
                stats.unexpected_drops, stats.drop_reasons
            ));
        }
        report.note(
            "a job is complete when the server counts it Succeeded; robots report success at once, so a robot is busy from its sending to its report",
        );
        fleet.shutdown().await;
        Ok(())
    })
    .await?;
    Ok(report)
}
