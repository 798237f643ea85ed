//! P2: server RSS per idle registered robot: (RSS at N - RSS at 0) / N, with N/4 and N/2 on the
//! way to show the growth.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{connect_summary, fleet_spec, require_pid, wait_metrics, with_target};
use crate::cli::P2Args;
use crate::fleet::Fleet;
use crate::http;
use crate::metrics;
use crate::report::Report;

pub(super) const TARGET: &str =
    "(RSS at 19k - RSS at 0) / 19k <= 10 KiB required, <= 5 KiB the goal";

pub(super) async fn run(args: &P2Args) -> Result<Report> {
    let mut report = Report::new("p2-memory", TARGET);
    report.param("robots", args.robots);
    report.param("settle_s", args.settle.as_secs_f64());
    with_target(&args.common, "p2", &mut report, async |target, report| {
        require_pid(target, "p2-memory")?;
        let mut http = http::client(target.addr);
        // Let the server finish starting (and make one request, as every later step does).
        let base = metrics::fetch(&mut http).await?.robots_connected();
        tokio::time::sleep(args.settle).await;
        let rss0 = target.rss_kib().unwrap_or(0);
        report.figure("server RSS at 0 robots", rss0 as f64 / 1024.0, "MiB");
        let spec = fleet_spec(&args.common, target, args.robots, false);
        let mut fleet = Fleet::start(spec).await?;
        report.param("worker_processes", fleet.processes());
        let mut steps = vec![args.robots / 4, args.robots / 2, args.robots];
        steps.dedup();
        steps.retain(|n| *n > 0);
        let started = Instant::now();
        for step in steps {
            let connect = fleet
                .connect(
                    Some(step),
                    args.common.connect_concurrency,
                    Duration::from_secs(30),
                    2,
                )
                .await?;
            let (metrics, took) = wait_metrics(
                &mut http,
                args.register_timeout,
                Duration::from_millis(100),
                |m| m.robots_connected() >= base + step as u64,
            )
            .await?;
            if took.is_none() {
                report.fail(format!(
                    "only {} of {step} robots registered within {:?} ({})",
                    metrics.robots_connected().saturating_sub(base),
                    args.register_timeout,
                    connect_summary(&connect)
                ));
                break;
            }
            if step == args.robots {
                report.figure(
                    "registration time (all robots, in steps)",
                    started.elapsed().as_secs_f64(),
                    "s",
                );
            }
            tokio::time::sleep(args.settle).await;
            let rss = target.rss_kib().unwrap_or(0);
            report.figure(
                &format!("server RSS at {step} robots"),
                rss as f64 / 1024.0,
                "MiB",
            );
            report.figure(
                &format!("per robot at {step}"),
                rss.saturating_sub(rss0) as f64 / step as f64,
                "KiB",
            );
            if step == args.robots {
                if let Some(fds) = target.open_fds() {
                    report.figure(&format!("server open files at {step} robots"), fds, "count");
                }
                if let Some(memory) = target.memory() {
                    report.figure(
                        "server peak RSS (VmHWM)",
                        memory.hwm_kib as f64 / 1024.0,
                        "MiB",
                    );
                }
            }
        }
        let stats = fleet.stats().await?;
        report.figure("unexpected disconnections", stats.unexpected_drops, "count");
        if stats.unexpected_drops > 0 {
            report.fail(format!(
                "{} unexpected disconnections: {:?}",
                stats.unexpected_drops, stats.drop_reasons
            ));
        }
        report
            .note("RSS is VmRSS of /proc/PID/status, read after each step's registrations settled");
        fleet.shutdown().await;
        Ok(())
    })
    .await?;
    Ok(report)
}
