//! P8: reconnect storm. N robots registered; all drop their connections at once, then all
//! reconnect at once (the server keeps running).

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{connect_summary, fleet_spec, register_fleet, wait_metrics, with_target};
use crate::cli::P8Args;
use crate::http;
use crate::metrics;
use crate::report::Report;
use crate::stats::Summary;

pub(super) const TARGET: &str =
    "10,000 robots reconnect at once: all registered <= 5 s, 0 failed handshakes";

pub(super) async fn run(args: &P8Args) -> Result<Report> {
    let mut report = Report::new("p8-reconnect", TARGET);
    report.param("robots", args.robots);
    report.param("wait_offline", !args.no_wait_offline);
    report.param("retries", args.retries);
    with_target(&args.common, "p8", &mut report, async |target, report| {
        let mut http = http::client(target.addr);
        let before = metrics::fetch(&mut http).await?;
        let spec = fleet_spec(&args.common, target, args.robots, false);
        let (mut fleet, base) =
            register_fleet(spec, &args.common, &mut http, args.register_timeout, report).await?;
        let expected = base + args.robots as u64;

        // Drop.
        let dropped = Instant::now();
        let still = fleet.drop_all(Duration::from_secs(30)).await?;
        if still > 0 {
            report.note(format!("{still} robots were still connected 30 s after the drop command"));
        }
        if !args.no_wait_offline {
            let (m, took) = wait_metrics(&mut http, Duration::from_secs(60), Duration::from_millis(20), |m| {
                m.robots_connected() <= base && m.connections_open() <= before.connections_open()
            })
            .await?;
            match took {
                Some(_) => report.figure(
                    "server saw every drop after",
                    dropped.elapsed().as_secs_f64(),
                    "s",
                ),
                None => report.note(format!(
                    "the server still counted {} robots and {} connections 60 s after the drop",
                    m.robots_connected().saturating_sub(base),
                    m.connections_open()
                )),
            }
        }

        // Reconnect, all at once, while watching the server's gauge.
        let tcp_before = crate::machine::tcp_ext();
        let cpu_before = (target.cpu_seconds(), fleet.cpu_seconds());
        let started = Instant::now();
        let mut watcher = http::client(target.addr);
        let watching = wait_metrics(&mut watcher, args.timeout, Duration::from_millis(20), |m| {
            m.robots_connected() >= expected
        });
        let reconnecting = fleet.connect(None, 0, Duration::from_secs(30), args.retries);
        let (watched, connect) = tokio::join!(watching, reconnecting);
        let connect = connect?;
        let (m, took) = watched?;
        let tcp_after = crate::machine::tcp_ext();
        let storm = started.elapsed().as_secs_f64();
        let cpu_after = (target.cpu_seconds(), fleet.cpu_seconds());
        match took {
            Some(_) => {}
            None => report.fail(format!(
                "only {} of {} robots registered again within {:?} ({})",
                m.robots_connected().saturating_sub(base),
                args.robots,
                args.timeout,
                connect_summary(&connect)
            )),
        }
        if let Some(took) = took {
            report.figure("all registered again (server gauge) after", took.as_secs_f64(), "s");
        }
        let handshakes: Vec<i64> = connect.handshake_us.iter().map(|us| *us as i64).collect();
        report.latency("robot-side reconnection", Summary::of(handshakes).as_ref());
        report.figure("robots reconnected (robot side)", connect.connected + connect.already, "robots");
        report.figure("failed handshakes", connect.failed_attempts, "count");
        report.figure("robots that never reconnected", connect.failed, "count");
        report.figure(
            "reconnection wall time (robot side, all done)",
            connect.elapsed_us as f64 / 1e6,
            "s",
        );
        if connect.failed_attempts > 0 {
            report.fail(format!(
                "{} failed handshakes: {}",
                connect.failed_attempts,
                connect_summary(&connect)
            ));
        }
        for counter in ["ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "SyncookiesSent"] {
            if let (Some(before), Some(after)) = (tcp_before.get(counter), tcp_after.get(counter)) {
                report.figure(
                    &format!("kernel {counter} during the storm (whole machine)"),
                    after.saturating_sub(*before),
                    "count",
                );
            }
        }
        if let (Some(before), Some(after)) = (cpu_before.0, cpu_after.0) {
            report.figure("server CPU during the storm", 100.0 * (after - before) / storm, "% of one core");
        }
        report.figure(
            "load generator CPU during the storm",
            100.0 * (cpu_after.1 - cpu_before.1) / storm,
            "% of one core",
        );
        let stats = fleet.stats().await?;
        if stats.unexpected_drops > 0 {
            report.fail(format!(
                "{} unexpected disconnections: {:?}",
                stats.unexpected_drops, stats.drop_reasons
            ));
        }
        report.note("drop = every robot closes its TCP connection without a closing handshake; reconnect = every robot opens a new one at the same time (no concurrency limit), from the same source addresses");
        fleet.shutdown().await;
        Ok(())
    })
    .await?;
    Ok(report)
}
