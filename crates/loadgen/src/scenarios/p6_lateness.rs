//! P6: firing lateness at a steady rate of due jobs. Each job is created `lead` before its
//! due moment; lateness = the robot's receive time - the due moment.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::p5_fanout::instant_of;
use super::{fleet_spec, register_fleet, with_target};
use crate::cli::P6Args;
use crate::http;
use crate::report::Report;
use crate::stats::Summary;
use crate::trigger::{Job, JobMaker, drive, job_body, now_us};

pub(super) const TARGET: &str =
    "at 1,000 due jobs/s: lateness p99 <= 10 ms, max <= 50 ms, never early";

pub(super) async fn run(args: &P6Args) -> Result<Report> {
    let mut report = Report::new("p6-lateness", TARGET);
    report.param("robots", args.robots);
    report.param("rate_per_s", args.rate);
    report.param("duration_s", args.duration.as_secs_f64());
    report.param("lead_s", args.lead.as_secs_f64());
    report.param("clients", args.clients);
    with_target(&args.common, "p6", &mut report, async |target, report| {
        let mut http = http::client(target.addr);
        let spec = fleet_spec(&args.common, target, args.robots, false);
        let (mut fleet, _) = register_fleet(
            spec,
            &args.common,
            &mut http,
            Duration::from_secs(180),
            report,
        )
        .await?;
        let rate = args.rate.max(1) as f64;
        let total = (rate * args.duration.as_secs_f64()).round() as u64;
        let base_us = now_us();
        let base = Instant::now();
        let lead_us = args.lead.as_micros() as i64;
        // The first job is created a second from now.
        let first_due = base_us + lead_us + 1_000_000;
        let robots = args.robots.max(1) as u64;
        let prefix = args.common.robot_prefix.clone();
        let due_of = move |seq: u64| first_due + (seq as f64 * 1e6 / rate) as i64;
        let maker: JobMaker = Arc::new(move |seq| {
            (seq < total).then(|| {
                let due = due_of(seq);
                Job {
                    body: job_body(&prefix, (seq % robots) as usize, due, Some(due)),
                    not_before: Some(instant_of(due - lead_us, base_us, base)),
                    due_us: Some(due),
                }
            })
        });
        let before = crate::metrics::fetch(&mut http).await?;
        let driving = drive(target.instances(), args.clients, None, true, maker);
        let result = driving.await;
        let created = result.created();
        let last_due = if total > 0 { due_of(total - 1) } else { first_due };
        // Wait for the last deliveries.
        let deadline = instant_of(last_due, base_us, base) + args.timeout;
        while Instant::now() < deadline {
            if fleet.stats().await?.deliveries >= created {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let after = crate::metrics::fetch(&mut http).await?;
        super::server_lateness(report, &before, &after);
        let deliveries = fleet.collect().await?;
        // Due moments are distinct (one per job), so they tell which 201 a delivery belongs to.
        let answered: HashMap<i64, i64> = result
            .accepted
            .iter()
            .filter_map(|a| Some((a.due_us?, a.answered_us)))
            .collect();
        let mut seen = HashSet::with_capacity(deliveries.len());
        let mut lateness = Vec::with_capacity(deliveries.len());
        let mut in_time = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            if seen.insert(delivery.job_id)
                && let Some(due) = delivery.due_us
            {
                let late = delivery.received_us - due;
                lateness.push(late);
                if answered.get(&due).is_some_and(|answered| *answered <= due) {
                    in_time.push(late);
                }
            }
        }
        let early = lateness.iter().filter(|l| **l < 0).count();
        let late_creations = result
            .accepted
            .iter()
            .filter(|a| a.due_us.is_some_and(|due| a.answered_us > due))
            .count();
        let margin = Summary::of(
            result
                .accepted
                .iter()
                .filter_map(|a| a.due_us.map(|due| due - a.answered_us))
                .collect(),
        );
        report.figure("jobs planned", total, "count");
        report.figure("jobs created (201)", created, "count");
        report.latency(
            "lateness, jobs created before their due moment",
            Summary::of(in_time).as_ref(),
        );
        report.latency("lateness, all jobs", Summary::of(lateness).as_ref());
        report.figure("early deliveries (never allowed)", early, "count");
        report.figure("packages received", deliveries.len(), "count");
        report.figure("duplicate deliveries", deliveries.len() - seen.len(), "count");
        if let Some(margin) = margin {
            report.millis("creation margin (due - 201) least", margin.min);
        }
        report.figure(
            "jobs whose 201 came after their due moment",
            late_creations,
            "count",
        );
        report.latency("trigger latency (201)", Summary::of(result.latencies_us.clone()).as_ref());
        if early > 0 {
            report.fail(format!("{early} packages arrived before their due moment"));
        }
        if (seen.len() as u64) < created {
            report.fail(format!(
                "{} accepted jobs were never delivered",
                created - seen.len() as u64
            ));
        }
        if deliveries.len() > seen.len() {
            report.fail(format!(
                "{} packages arrived twice",
                deliveries.len() - seen.len()
            ));
        }
        if created < total {
            report.fail(format!("{} of {total} triggers were refused", total - created));
            for (sample, n) in &result.samples {
                report.note(format!("{n}× {sample}"));
            }
        }
        if late_creations > 0 {
            report.note(format!(
                "{late_creations} jobs were accepted after their due moment (the triggers could not keep up; the server then runs them at once): only the lateness of the jobs created in time measures the scheduler. --lead 40s creates every job before the first one is due"
            ));
        }
        let stats = fleet.stats().await?;
        if stats.unexpected_drops > 0 {
            report.fail(format!(
                "{} unexpected disconnections: {:?}",
                stats.unexpected_drops, stats.drop_reasons
            ));
        }
        report.note("same clock: the robots and the server run on this machine; receive times are taken by the robots in worker processes");
        fleet.shutdown().await;
        Ok(())
    })
    .await?;
    Ok(report)
}
