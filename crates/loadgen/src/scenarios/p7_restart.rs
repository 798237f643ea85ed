//! P7: fill the database with pending jobs (through the API), add one job due shortly for a
//! connected robot, `kill -9` the server before it is due, start it again on the same folder:
//! time to `listening on`, time to the due job reaching the robot, RSS after the start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use anyhow::bail;

use super::robots::{LibRobot, RobotEvent};
use super::{fleet_spec, wait_metrics, with_target};
use crate::cli::P7Args;
use crate::fleet::Fleet;
use crate::http;
use crate::metrics;
use crate::report::Report;
use crate::stats::rate;
use crate::trigger::{Job, JobMaker, drive, job_body, now_us};

pub(super) const TARGET: &str = "restart with 1,000,000 pending jobs: listening <= 2 s, first due job sent <= 3 s, RSS <= 200 MB";

const YEAR_US: i64 = 365 * 24 * 3600 * 1_000_000;

pub(super) async fn run(args: &P7Args) -> Result<Report> {
    let mut report = Report::new("p7-restart", TARGET);
    report.param("pending", args.pending);
    report.param("clients", args.clients);
    report.param("due_after_s", args.due_after.as_secs_f64());
    report.param("down_s", args.down.as_secs_f64());
    if args.common.server_bin.is_none() {
        bail!("p7-restart kills and restarts the server: start it with --server-bin");
    }
    with_target(&args.common, "p7", &mut report, async |target, report| {
        let mut http = http::client(target.addr);
        // The robot that waits across the restart: index `pending_robots`, after the robots the
        // pending jobs are for (those never connect).
        let live = args.pending_robots.max(1);
        let url = target.ws_url(&args.common.ws_path);
        // Counted before the robot connects: read after, it may or may not include the robot.
        let base = metrics::fetch(&mut http).await?;
        let mut robot = LibRobot::spawn(&args.common, &url, live, true);
        match robot.next(Duration::from_secs(15)).await {
            Some(RobotEvent::Connected { .. }) => {}
            other => bail!("the robot could not connect: {other:?}"),
        }
        wait_metrics(&mut http, Duration::from_secs(15), Duration::from_millis(50), |m| {
            m.robots_connected() > base.robots_connected()
        })
        .await?;

        // The robots the pending jobs are for must have registered once (the server refuses a
        // trigger for a robot it never saw); they are offline during the rest of the run.
        let spread = args.pending_robots.max(1);
        let mut owners = Fleet::start(fleet_spec(&args.common, target, spread, false)).await?;
        let connect = owners
            .connect(None, args.common.connect_concurrency, Duration::from_secs(30), 2)
            .await?;
        if connect.failed > 0 {
            bail!(
                "the robots of the pending jobs could not register: {}",
                super::connect_summary(&connect)
            );
        }
        let (_, registered) = wait_metrics(&mut http, Duration::from_secs(60), Duration::from_millis(50), |m| {
            m.robots_connected() > base.robots_connected() + spread as u64 // and the live one
        })
        .await?;
        if registered.is_none() {
            bail!("the robots of the pending jobs did not register within 60 s");
        }
        owners.shutdown().await;

        // Fill.
        let pending = args.pending as u64;
        let spread = spread as u64;
        let prefix = args.common.robot_prefix.clone();
        let far = now_us() + YEAR_US;
        let maker: JobMaker = Arc::new(move |seq| {
            (seq < pending).then(|| Job {
                // Distinct moments 10 ms apart, a year ahead.
                body: job_body(&prefix, (seq % spread) as usize, far + seq as i64 * 10_000, None),
                not_before: None,
                due_us: None,
            })
        });
        let fill = drive(
            vec![target.addr],
            args.clients,
            Some(Instant::now() + args.fill_timeout),
            false,
            maker,
        )
        .await;
        let filled = fill.created();
        report.figure("pending jobs created (201)", filled, "count");
        report.figure("fill time", fill.elapsed.as_secs_f64(), "s");
        report.figure(
            "fill rate",
            rate(filled, fill.elapsed.as_secs_f64()),
            "1/s",
        );
        if fill.other_answers() > 0 {
            report.fail(format!(
                "{} fill triggers were not accepted",
                fill.other_answers()
            ));
            for (sample, n) in &fill.samples {
                report.note(format!("{n}× {sample}"));
            }
        }
        if filled < pending {
            report.note(format!(
                "only {filled} of {pending} pending jobs were created within --fill-timeout {:?}: the figures are for {filled}",
                args.fill_timeout,
            ));
        }
        let before = metrics::fetch(&mut http).await?;
        let pending_before = before.jobs("Pending");
        report.figure("Pending jobs before the kill (server count)", pending_before, "count");
        if let Some(memory) = target.memory() {
            report.figure(
                "server RSS before the kill",
                memory.rss_kib as f64 / 1024.0,
                "MiB",
            );
        }
        if let Some(dir) = target.dir() {
            let db = dir.join("data").join("socket-server.db");
            if let Ok(meta) = std::fs::metadata(&db) {
                report.figure("database file", meta.len() as f64 / 1048576.0, "MiB");
            }
        }

        // The due job, then the kill before it is due.
        let due_us = now_us() + args.due_after.as_micros() as i64;
        let answer = http
            .post_bytes(
                "/api/jobs",
                job_body(&args.common.robot_prefix, live, due_us, Some(due_us)),
            )
            .await?;
        if answer.status != 201 {
            bail!("the due job was refused: {} {}", answer.status, answer.text());
        }
        let due_job = answer.try_json()?.get("id").and_then(serde_json::Value::as_i64);
        target.kill9().await?;
        let killed_us = now_us();
        if killed_us >= due_us {
            report.note("the kill came after the due moment: raise --due-after");
        }
        // Anything the robot saw before the kill is not what is measured.
        let mut close_reason = None;
        while let Ok(event) = robot.events.try_recv() {
            if let RobotEvent::Closed { reason } = event {
                close_reason.get_or_insert(reason);
            }
        }
        tokio::time::sleep(args.down).await;

        // The restart.
        let started = target.restart().await?;
        let rss_listening = target.memory();
        report.figure(
            "spawn -> listening",
            started.listening_after.as_secs_f64(),
            "s",
        );
        let deadline = started.spawned_at + args.timeout;
        let mut first_due: Option<(Duration, i64)> = None;
        let mut reconnected: Option<Duration> = None;
        let mut refused = 0;
        while first_due.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match robot.next(left).await {
                Some(RobotEvent::Connected { at }) => {
                    reconnected.get_or_insert(at.saturating_duration_since(started.spawned_at));
                }
                Some(RobotEvent::Package {
                    job_id,
                    received_us,
                    at,
                    due_us: package_due,
                }) => {
                    if due_job.is_none_or(|id| id == job_id) {
                        let lateness = received_us - package_due.unwrap_or(due_us);
                        first_due = Some((at.saturating_duration_since(started.spawned_at), lateness));
                    }
                }
                Some(RobotEvent::Closed { reason }) => {
                    close_reason.get_or_insert(reason);
                }
                Some(RobotEvent::ConnectFailed { error }) => {
                    refused += 1;
                    if refused == 1 {
                        report.note(format!("robot reconnection attempts fail while the server is down: {error}"));
                    }
                }
                None => break,
            }
        }
        let rss_first = target.memory();
        if let Some(reason) = close_reason {
            report.note(format!("the robot's connection at the kill: {reason}"));
        }
        if let Some(after) = reconnected {
            report.figure("spawn -> robot connected again", after.as_secs_f64(), "s");
        }
        match first_due {
            Some((after, lateness)) => {
                report.figure("spawn -> due job received by the robot", after.as_secs_f64(), "s");
                report.figure(
                    "due job lateness (it fell due while the server was down)",
                    lateness as f64 / 1e6,
                    "s",
                );
            }
            None => report.fail(format!(
                "the job due during the downtime did not reach the robot within {:?} of the spawn",
                args.timeout
            )),
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            started.spawned_at + Duration::from_secs(5),
        ))
        .await;
        if let Some(memory) = rss_listening {
            report.figure("server RSS at listening", memory.rss_kib as f64 / 1024.0, "MiB");
        }
        if let Some(memory) = rss_first {
            report.figure(
                "server RSS at the first delivery",
                memory.rss_kib as f64 / 1024.0,
                "MiB",
            );
        }
        if let Some(memory) = target.memory() {
            report.figure("server RSS 5 s after spawn", memory.rss_kib as f64 / 1024.0, "MiB");
            report.figure("server peak RSS (VmHWM)", memory.hwm_kib as f64 / 1024.0, "MiB");
        }
        let after = metrics::fetch(&mut http::client(target.addr)).await?;
        let pending_after = after.jobs("Pending");
        report.figure("Pending jobs after the restart (server count)", pending_after, "count");
        if pending_after < pending_before {
            report.fail(format!(
                "{} pending jobs were lost across kill -9",
                pending_before - pending_after
            ));
        }
        report.note("the kill is SIGKILL right after the due job's 201; the robot retries its connection every 20 ms, so the delivery time includes up to 20 ms of reconnection");
        robot.stop().await;
        Ok(())
    })
    .await?;
    Ok(report)
}
