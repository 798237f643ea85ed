//! P4: end to end. R robots report success on each package; C clients trigger jobs due now at
//! full speed for D seconds. A job is complete when the server has stored its success report
//! (it counts as `Succeeded` in `/metrics`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{fleet_spec, register_fleet, with_target};
use crate::cli::P4Args;
use crate::http;
use crate::metrics::{self, Metrics};
use crate::report::Report;
use crate::stats::{Summary, rate};
use crate::trigger::{Job, JobMaker, drive, job_body, now_us};

pub(super) const TARGET: &str = ">= 10,000 completed jobs/s with 2,000 robots";

pub(super) async fn run(args: &P4Args) -> Result<Report> {
    let mut report = Report::new("p4-e2e", TARGET);
    report.param("robots", args.robots);
    report.param("clients", args.clients);
    report.param("duration_s", args.duration.as_secs_f64());
    report.param("max_rate", args.max_rate);
    with_target(&args.common, "p4", &mut report, async |target, report| {
        let mut http = http::client(target.addr);
        let spec = fleet_spec(&args.common, target, args.robots, true);
        let (mut fleet, _) = register_fleet(
            spec,
            &args.common,
            &mut http,
            Duration::from_secs(180),
            report,
        )
        .await?;
        let before = metrics::fetch(&mut http).await?;
        let succeeded = |m: &Metrics| m.jobs("Succeeded").saturating_sub(before.jobs("Succeeded"));
        let robots = args.robots.max(1) as u64;
        let prefix = args.common.robot_prefix.clone();
        let pace = (args.max_rate > 0).then(|| (now_us(), Instant::now(), 1e6 / args.max_rate as f64));
        let maker: JobMaker = Arc::new(move |seq| {
            let robot = (seq % robots) as usize;
            // Due now: the moment the trigger is sent is its due moment.
            let (due, not_before) = match pace {
                Some((base_us, base, interval_us)) => {
                    let offset = (seq as f64 * interval_us) as i64;
                    (base_us + offset, Some(base + Duration::from_micros(offset as u64)))
                }
                None => (now_us(), None),
            };
            Some(Job {
                body: job_body(&prefix, robot, due, Some(due)),
                not_before,
                due_us: Some(due),
            })
        });
        let cpu_before = target.cpu_seconds();
        let own_before = crate::machine::own_cpu_seconds().unwrap_or(0.0) + fleet.cpu_seconds();
        let started = Instant::now();
        let deadline = started + args.duration;
        let driving = drive(target.instances(), args.clients, Some(deadline), false, maker);
        // Read the Succeeded count once a second while the triggers run.
        let sampling = async {
            let mut sampler = http::client(target.addr);
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let wait = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                if let Ok(m) = metrics::fetch(&mut sampler).await {
                    samples.push((started.elapsed().as_secs_f64(), succeeded(&m)));
                }
            }
            samples
        };
        let (result, samples) = tokio::join!(driving, sampling);
        let window = started.elapsed().as_secs_f64();
        let at_window_end = samples.last().map_or(0, |(_, n)| *n);
        let created = result.created();
        // Drain: every accepted job must end Succeeded.
        let mut drained = None;
        let mut last = metrics::fetch(&mut http).await?;
        while started.elapsed() < args.duration + args.drain_timeout {
            last = metrics::fetch(&mut http).await?;
            if succeeded(&last) >= created {
                drained = Some(started.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cpu = match (cpu_before, target.cpu_seconds()) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        };
        let done = succeeded(&last);
        let own = crate::machine::own_cpu_seconds().unwrap_or(0.0) + fleet.cpu_seconds() - own_before;
        let frames_per_robot = rate(created, window) / robots as f64
            * if args.common.extended { 2.0 } else { 1.0 };
        report.figure("frames per robot (reports, acks)", frames_per_robot, "1/s");
        if frames_per_robot > 20.0 {
            report.note(format!(
                "each robot sent {frames_per_robot:.1} frames/s, over the server's default --robot-rate of 20/s: frames beyond the burst are dropped (lost reports, resends). Use more robots or --max-rate"
            ));
        }
        report.figure("accepted triggers (201)", created, "count");
        report.figure("accepted triggers/s", rate(created, window), "1/s");
        report.figure(
            "completed jobs/s during the trigger window",
            rate(at_window_end, window),
            "1/s",
        );
        // The steadiest stretch: from the first sample to the last one of the window.
        if let (Some(first), Some(last)) = (samples.first(), samples.last())
            && last.0 > first.0
        {
            report.figure(
                "completed jobs/s, window after its first second",
                (last.1.saturating_sub(first.1)) as f64 / (last.0 - first.0),
                "1/s",
            );
        }
        match drained {
            Some(at) => {
                report.figure(
                    "completed jobs/s, all jobs (until the last Succeeded)",
                    rate(created, at),
                    "1/s",
                );
                report.figure("drain after the trigger window", (at - window).max(0.0), "s");
            }
            None => report.fail(format!(
                "{} of {created} accepted jobs not Succeeded {:?} after the trigger window",
                created.saturating_sub(done),
                args.drain_timeout
            )),
        }
        report.figure("jobs Succeeded (server count)", done, "count");
        let reports = last
            .count("rpa_reports_total")
            .saturating_sub(before.count("rpa_reports_total"));
        report.figure("reports received (server count)", reports, "count");
        let failed = last.jobs("Failed").saturating_sub(before.jobs("Failed"));
        if failed > 0 {
            report.fail(format!("{failed} jobs ended Failed"));
        }
        report.latency(
            "trigger latency (201)",
            Summary::of(result.latencies_us.clone()).as_ref(),
        );
        let deliveries = fleet.collect().await?;
        let mut seen: HashMap<i64, u32> = HashMap::with_capacity(deliveries.len());
        let mut latency = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            let count = seen.entry(delivery.job_id).or_default();
            *count += 1;
            if *count == 1
                && let Some(due) = delivery.due_us
            {
                latency.push(delivery.received_us - due);
            }
        }
        let duplicates = deliveries.len() - seen.len();
        report.latency(
            "trigger sent -> package received",
            Summary::of(latency).as_ref(),
        );
        report.figure("packages received by robots", deliveries.len(), "count");
        report.figure("duplicate deliveries", duplicates, "count");
        if duplicates > 0 {
            report.fail(format!("{duplicates} packages arrived twice (no restart happened)"));
        }
        if let Some(cpu) = cpu {
            report.figure(
                "server CPU",
                100.0 * cpu / drained.unwrap_or(window).max(1e-9),
                "% of one core",
            );
        }
        report.figure(
            "load generator CPU (clients and robots)",
            100.0 * own / drained.unwrap_or(window).max(1e-9),
            "% of one core",
        );
        report.figure("other answers", result.other_answers(), "count");
        for (sample, n) in &result.samples {
            report.note(format!("{n}× {sample}"));
        }
        let stats = fleet.stats().await?;
        if stats.unexpected_drops > 0 {
            report.fail(format!(
                "{} unexpected disconnections: {:?}",
                stats.unexpected_drops, stats.drop_reasons
            ));
        }
        if !stats.problems.is_empty() {
            report.note(format!("robot-side problems: {:?}", stats.problems));
        }
        report.note(
            "a job is complete when the server counts it Succeeded (GET /metrics rpa_jobs); the trigger -> delivery latency starts when the client sends the POST",
        );
        fleet.shutdown().await;
        Ok(())
    })
    .await?;
    Ok(report)
}
