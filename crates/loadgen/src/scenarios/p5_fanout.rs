//! P5: one job each for N robots, all due at the same moment T.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{fleet_spec, register_fleet, with_target};
use crate::cli::P5Args;
use crate::http;
use crate::metrics;
use crate::report::Report;
use crate::stats::Summary;
use crate::trigger::{Job, JobMaker, drive, job_body, now_us};

pub(super) const TARGET: &str =
    "19,000 jobs due in the same second: all delivered and recorded <= 3 s";

/// `instant` (µs since the epoch) as a monotonic instant, relative to a pair read together.
pub(super) fn instant_of(epoch_us: i64, base_us: i64, base: Instant) -> Instant {
    if epoch_us >= base_us {
        base + Duration::from_micros((epoch_us - base_us) as u64)
    } else {
        base.checked_sub(Duration::from_micros((base_us - epoch_us) as u64))
            .unwrap_or(base)
    }
}

pub(super) async fn run(args: &P5Args) -> Result<Report> {
    let mut report = Report::new("p5-fanout", TARGET);
    report.param("robots", args.robots);
    report.param("clients", args.clients);
    report.param("lead_s", args.lead.as_secs_f64());
    with_target(&args.common, "p5", &mut report, async |target, report| {
        let mut http = http::client(target.addr);
        let spec = fleet_spec(&args.common, target, args.robots, false);
        let (mut fleet, _) =
            register_fleet(spec, &args.common, &mut http, args.register_timeout, report).await?;
        let before = metrics::fetch(&mut http).await?;
        let sent_before = before.jobs("Executed") + before.jobs("Succeeded");
        // T: a whole second, at least `lead` ahead.
        let base_us = now_us();
        let base = Instant::now();
        let lead_us = args.lead.as_micros() as i64;
        let t_us = (base_us + lead_us).div_euclid(1_000_000) * 1_000_000 + 1_000_000;
        let t = instant_of(t_us, base_us, base);
        let n = args.robots as u64;
        let prefix = args.common.robot_prefix.clone();
        let maker: JobMaker = Arc::new(move |seq| {
            (seq < n).then(|| Job {
                body: job_body(&prefix, seq as usize, t_us, Some(t_us)),
                not_before: None,
                due_us: Some(t_us),
            })
        });
        let created_at = Instant::now();
        let result = drive(target.instances(), args.clients, None, true, maker).await;
        let created = result.created();
        report.figure("jobs created (201)", created, "count");
        report.figure(
            "creation time",
            created_at.elapsed().as_secs_f64(),
            "s",
        );
        let last_answer = result.accepted.iter().map(|a| a.answered_us).max().unwrap_or(0);
        report.figure(
            "margin: T - last 201",
            (t_us - last_answer) as f64 / 1e6,
            "s",
        );
        if last_answer > t_us {
            report.fail(format!(
                "measurement invalid: jobs were still being created {:.3} s after T; raise --lead",
                (last_answer - t_us) as f64 / 1e6
            ));
        }
        if created < n {
            report.fail(format!("{} of {n} triggers were refused", n - created));
            for (sample, count) in &result.samples {
                report.note(format!("{count}× {sample}"));
            }
        }
        // From shortly before T, watch the server record the sendings.
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            t.checked_sub(Duration::from_millis(300)).unwrap_or(t),
        ))
        .await;
        let cpu_before = (target.cpu_seconds(), fleet.cpu_seconds());
        let mut recorded_after: Option<f64> = None;
        let mut recorded = 0;
        let deadline = t + args.timeout;
        while Instant::now() < deadline {
            let m = metrics::fetch(&mut http).await?;
            let at_us = now_us();
            recorded = (m.jobs("Executed") + m.jobs("Succeeded")).saturating_sub(sent_before);
            if recorded >= created {
                recorded_after = Some((at_us - t_us) as f64 / 1e6);
                break;
            }
            tokio::time::sleep(args.poll_every).await;
        }
        match recorded_after {
            Some(after) => report.figure("all recorded as sent (server), after T", after, "s"),
            None => report.fail(format!(
                "only {recorded} of {created} jobs recorded as sent {:?} after T",
                args.timeout
            )),
        }
        // Then wait for the robots to have them all.
        let mut delivered = 0;
        while Instant::now() < deadline {
            delivered = fleet.stats().await?.deliveries;
            if delivered >= created {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let after_metrics = metrics::fetch(&mut http).await?;
        let busy = (now_us() - t_us + 300_000) as f64 / 1e6;
        if let (Some(before), Some(after)) = (cpu_before.0, target.cpu_seconds()) {
            report.figure("server CPU from T-0.3 s to the last delivery", 100.0 * (after - before) / busy, "% of one core");
        }
        report.figure(
            "load generator CPU from T-0.3 s to the last delivery",
            100.0 * (fleet.cpu_seconds() - cpu_before.1) / busy,
            "% of one core",
        );
        super::server_lateness(report, &before, &after_metrics);
        let deliveries = fleet.collect().await?;
        let mut first: HashMap<u32, i64> = HashMap::with_capacity(deliveries.len());
        let mut jobs: HashMap<i64, u32> = HashMap::with_capacity(deliveries.len());
        for delivery in &deliveries {
            *jobs.entry(delivery.job_id).or_default() += 1;
            let entry = first.entry(delivery.robot).or_insert(delivery.received_us);
            *entry = (*entry).min(delivery.received_us);
        }
        let after_t: Vec<i64> = first.values().map(|received| received - t_us).collect();
        let early = after_t.iter().filter(|d| **d < 0).count();
        let summary = Summary::of(after_t);
        report.figure("robots that received their package", first.len(), "robots");
        report.latency("receive - T", summary.as_ref());
        if let Some(summary) = summary {
            report.millis("receive - T min (first package)", summary.min);
            report.figure(
                "all delivered (robot side), after T",
                summary.max as f64 / 1e6,
                "s",
            );
        }
        report.figure("received before T (never allowed)", early, "count");
        let duplicates = deliveries.len() - jobs.len();
        report.figure("duplicate deliveries", duplicates, "count");
        if early > 0 {
            report.fail(format!("{early} packages arrived before their due moment"));
        }
        if (first.len() as u64) < created {
            report.fail(format!(
                "{} robots never received their package ({delivered} deliveries counted)",
                created - first.len() as u64
            ));
        }
        if duplicates > 0 {
            report.fail(format!("{duplicates} packages arrived twice"));
        }
        let stats = fleet.stats().await?;
        if stats.unexpected_drops > 0 {
            report.fail(format!(
                "{} unexpected disconnections: {:?}",
                stats.unexpected_drops, stats.drop_reasons
            ));
        }
        report.note(format!(
            "T is a whole second; the server's count is polled every {:?}; receive times are taken by the robots (worker processes sharing the CPUs)",
            args.poll_every
        ));
        fleet.shutdown().await;
        Ok(())
    })
    .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_to_instant() {
        let base = Instant::now();
        assert_eq!(
            instant_of(2_000_000, 1_000_000, base),
            base + Duration::from_secs(1)
        );
        assert_eq!(instant_of(1_000_000, 1_000_000, base), base);
        assert!(instant_of(0, 1_000_000, base) <= base);
    }
}
