//! P1: idle robots held by one server process, pinged every ping interval.

use std::time::Instant;

use anyhow::Result;

use super::{fleet_spec, register_fleet, with_target};
use crate::cli::P1Args;
use crate::http;
use crate::metrics;
use crate::report::Report;

pub(super) const TARGET: &str = "19,000 robots held 10 min, pinged every 10 s, 0 unexpected drops";

pub(super) async fn run(args: &P1Args) -> Result<Report> {
    let mut report = Report::new("p1-idle", TARGET);
    report.param("robots", args.robots);
    report.param("duration_s", args.duration.as_secs_f64());
    with_target(&args.common, "p1", &mut report, async |target, report| {
        let mut http = http::client(target.addr);
        let spec = fleet_spec(&args.common, target, args.robots, false);
        let (mut fleet, base) =
            register_fleet(spec, &args.common, &mut http, args.register_timeout, report).await?;
        let expected = base + args.robots as u64;
        fleet.reset_pings().await?;
        let cpu_before = target.cpu_seconds();
        let held = Instant::now();
        let mut lowest = u64::MAX;
        let mut samples = 0;
        let mut peak_rss = 0;
        let mut peak_fds = 0;
        // At least one sample, however short the hold.
        loop {
            let left = args.duration.saturating_sub(held.elapsed());
            tokio::time::sleep(left.min(args.sample_every)).await;
            let connected = metrics::fetch(&mut http).await?.robots_connected();
            lowest = lowest.min(connected);
            samples += 1;
            peak_rss = peak_rss.max(target.rss_kib().unwrap_or(0));
            peak_fds = peak_fds.max(target.open_fds().unwrap_or(0));
            if let Some(status) = target.has_exited() {
                report.fail(format!("the server exited during the hold: {status}"));
                break;
            }
            if held.elapsed() >= args.duration {
                break;
            }
        }
        let hold = held.elapsed().as_secs_f64();
        let stats = fleet.stats().await?;
        report.figure("held for", hold, "s");
        report.figure(
            "server gauge: lowest robots connected during the hold",
            lowest.saturating_sub(base),
            "robots",
        );
        report.figure("samples of the gauge", samples, "count");
        report.figure(
            "robots connected at the end (robot side)",
            stats.connected,
            "robots",
        );
        report.figure("unexpected disconnections", stats.unexpected_drops, "count");
        let mean = if stats.robots > 0 {
            stats.pings_sum as f64 / stats.robots as f64
        } else {
            0.0
        };
        report.figure(
            "pings per robot during the hold: least",
            stats.pings_min,
            "pings",
        );
        report.figure("pings per robot during the hold: mean", mean, "pings");
        report.figure(
            "pings per robot during the hold: most",
            stats.pings_max,
            "pings",
        );
        if let (Some(before), Some(after)) = (cpu_before, target.cpu_seconds()) {
            report.figure(
                "server CPU during the hold",
                100.0 * (after - before) / hold.max(1e-9),
                "% of one core",
            );
        }
        if peak_rss > 0 {
            report.figure(
                "server RSS (highest sample)",
                peak_rss as f64 / 1024.0,
                "MiB",
            );
        }
        if peak_fds > 0 {
            report.figure("server open files (highest sample)", peak_fds, "count");
        }
        if stats.unexpected_drops > 0 {
            report.fail(format!(
                "{} unexpected disconnections: {:?}",
                stats.unexpected_drops, stats.drop_reasons
            ));
        }
        if lowest < expected {
            report.fail(format!(
                "the server counted {} robots at its lowest, {} expected",
                lowest.saturating_sub(base),
                args.robots
            ));
        }
        if !stats.problems.is_empty() {
            report.note(format!("robot-side problems: {:?}", stats.problems));
        }
        fleet.shutdown().await;
        Ok(())
    })
    .await?;
    Ok(report)
}
