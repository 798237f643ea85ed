//! P3: durable triggers (`201` only after commit) from C concurrent keep-alive clients, every
//! job due a year ahead so nothing is delivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::robots::{LibRobot, RobotEvent};
use super::{wait_metrics, with_target};
use crate::cli::P3Args;
use crate::http;
use crate::metrics;
use crate::report::Report;
use crate::stats::{Summary, rate};
use crate::trigger::{Job, JobMaker, drive, job_body, now_us};

pub(super) const TARGET: &str = ">= 20,000 accepted triggers/s at 64 clients, p99 <= 20 ms";

const YEAR_US: i64 = 365 * 24 * 3600 * 1_000_000;

pub(super) async fn run(args: &P3Args) -> Result<Report> {
    let mut report = Report::new("p3-triggers", TARGET);
    report.param("clients", args.clients);
    report.param("duration_s", args.duration.as_secs_f64());
    report.param("robots", args.robots);
    report.param("webhook", args.webhook);
    with_target(&args.common, "p3", &mut report, async |target, report| {
        let mut http = http::client(target.addr);
        let before = metrics::fetch(&mut http).await?;
        let robots_count = args.robots.max(1);
        let url = target.ws_url(&args.common.ws_path);
        let mut robots: Vec<LibRobot> = (0..robots_count)
            .map(|i| LibRobot::spawn(&args.common, &url, i, false))
            .collect();
        for robot in &mut robots {
            match robot.next(Duration::from_secs(15)).await {
                Some(RobotEvent::Connected { .. }) => {}
                other => anyhow::bail!("a robot could not connect: {other:?}"),
            }
        }
        wait_metrics(
            &mut http,
            Duration::from_secs(15),
            Duration::from_millis(50),
            |m| m.robots_connected() >= before.robots_connected() + robots_count as u64,
        )
        .await?;
        // No scrape from here to the end of the run: the counts judged at the end are fresh
        // once COUNTS_FRESH_FOR has passed since this moment.
        let last_scrape = Instant::now();
        let sink = if args.webhook {
            let sink = super::webhook_sink::Sink::start().await?;
            sink.subscribe(&mut http).await?;
            Some(sink)
        } else {
            None
        };
        let prefix = args.common.robot_prefix.clone();
        let far = now_us() + YEAR_US;
        let maker: JobMaker = Arc::new(move |seq| {
            let robot = (seq % robots_count as u64) as usize;
            // Distinct moments, a millisecond apart, a year ahead.
            let at = far + seq as i64 * 1000;
            Some(Job {
                body: job_body(&prefix, robot, at, None),
                not_before: None,
                due_us: None,
            })
        });
        let cpu_before = target.cpu_seconds();
        let own_before = crate::machine::own_cpu_seconds();
        let deadline = Instant::now() + args.duration;
        let result = drive(
            target.instances(),
            args.clients,
            Some(deadline),
            false,
            maker,
        )
        .await;
        let seconds = result.elapsed.as_secs_f64();
        let created = result.created();
        report.figure("accepted triggers (201)", created, "count");
        report.figure("accepted triggers/s", rate(created, seconds), "1/s");
        report.latency(
            "trigger latency",
            Summary::of(result.latencies_us.clone()).as_ref(),
        );
        report.figure("other answers", result.other_answers(), "count");
        for (status, n) in &result.statuses {
            if *status != 201 {
                let label = if *status == 0 {
                    "no answer (connection error or timeout)".to_owned()
                } else {
                    format!("answers {status}")
                };
                report.figure(&label, *n, "count");
            }
        }
        report.figure("HTTP connections opened", result.connections, "count");
        if let Some(sink) = &sink {
            // Each accepted trigger is one job.created event for the receiver.
            let during = sink.deliveries();
            report.figure("webhook deliveries during the run", during, "count");
            report.figure(
                "webhook deliveries/s during the run",
                rate(during, seconds),
                "1/s",
            );
            let caught_up = Instant::now();
            let limit = caught_up + Duration::from_secs(120);
            while sink.deliveries() < created && Instant::now() < limit {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            report.figure(
                "webhook catch-up after the run",
                caught_up.elapsed().as_secs_f64(),
                "s",
            );
            report.figure("webhook deliveries", sink.deliveries(), "count");
            report.figure("highest event id delivered", sink.last_event(), "id");
            if sink.deliveries() < created {
                report.fail(format!(
                    "{created} jobs were created but the webhook got {} deliveries within 120 s",
                    sink.deliveries()
                ));
            }
        }
        if let (Some(before), Some(after)) = (cpu_before, target.cpu_seconds()) {
            report.figure(
                "server CPU",
                100.0 * (after - before) / seconds.max(1e-9),
                "% of one core",
            );
        }
        if let (Some(before), Some(after)) = (own_before, crate::machine::own_cpu_seconds()) {
            report.figure(
                "load generator CPU",
                100.0 * (after - before) / seconds.max(1e-9),
                "% of one core",
            );
        }
        for (sample, n) in &result.samples {
            report.note(format!("{n}× {sample}"));
        }
        // Every 201 is a committed job: the server must count them all as Pending.
        let after = metrics::fetch_counted_after(&mut http, last_scrape).await?;
        let stored = after.jobs("Pending").saturating_sub(before.jobs("Pending"));
        report.figure("Pending jobs added (server count)", stored, "count");
        if stored < created {
            report.fail(format!(
                "{created} triggers got 201 but only {stored} Pending jobs were added"
            ));
        }
        for robot in robots {
            robot.stop().await;
        }
        Ok(())
    })
    .await?;
    Ok(report)
}
