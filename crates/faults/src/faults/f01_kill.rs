//! F1: `kill -9` during a trigger burst, then restart; repeated. With `--pool` the triggers name a
//! pool all the robots belong to, so that the kills strike assignments too (docs/POOLS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::{
    Env, Load, LoadSpec, Rng, check_ledger, integrity_check, report_verdict, wait_all_due,
    wait_all_online, wait_delivered,
};
use crate::api::{Api, Target};
use crate::checker::FaultMark;
use crate::clock::now_us;
use crate::fleet::{Fleet, RobotSpec, SharedLedger, lock};
use crate::report::{FaultReport, ms};
use crate::server::{self, Server, SpecExt};

#[derive(Debug, Clone, Args)]
pub struct F1Args {
    /// Kill-and-restart cycles.
    #[arg(long, default_value_t = 10)]
    pub cycles: u32,
    /// Concurrent HTTP clients posting triggers.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Connected robots (half extended, half field robots).
    #[arg(long, default_value_t = 6)]
    pub robots: usize,
    /// The kill comes this many milliseconds into the burst, at random between the two.
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], default_values_t = [300, 1200])]
    pub kill_after_ms: Vec<u64>,
    /// Triggered jobs are due this many milliseconds after they are posted, at random.
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], default_values_t = [100, 3000])]
    pub due_ms: Vec<u64>,
    /// A delivery received at most this long before a kill counts as in flight at the kill.
    #[arg(long, default_value_t = 1000)]
    pub in_flight_window_ms: u64,
    /// Put every robot in one pool and trigger the pool instead of each robot by address.
    #[arg(long)]
    pub pool: bool,
}

/// The pool of `--pool`.
const POOL: &str = "f1-pool";

pub async fn run(env: &Env, args: &F1Args, report: &mut FaultReport) -> Result<()> {
    report.note(format!(
        "{} cycles: {} clients post triggers due in {}-{} ms for {} connected robots{}; after {}-{} ms \
         the server gets SIGKILL, the database is checked with PRAGMA integrity_check while it is \
         down, and the server is started again on the same folder and port",
        args.cycles,
        args.clients,
        args.due_ms[0],
        args.due_ms[1],
        args.robots,
        if args.pool {
            format!(" (for their pool `{POOL}`, not for one robot each)")
        } else {
            String::new()
        },
        args.kill_after_ms[0],
        args.kill_after_ms[1]
    ));
    let dir = env.work_dir("f1")?;
    let spec = server::spec(&env.server_bin, dir.path()).unlimited_robot_rate();
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let ledger = SharedLedger::default();
    let mut fleet = Fleet::new(&server.ws_url(), Arc::clone(&ledger));
    for index in 0..args.robots.max(1) {
        fleet.add(RobotSpec::new(100 + index, index % 2 == 0));
    }
    let addresses = fleet.addresses();
    if !wait_all_online(&api, &addresses, Duration::from_secs(15)).await? {
        anyhow::bail!("the robots did not come online");
    }
    let targets = if args.pool {
        for address in &addresses {
            api.set_pools(address, &[POOL]).await?;
        }
        vec![Target::pool(POOL)]
    } else {
        fleet.targets()
    };

    let mut rng = Rng::new(1);
    let mut restarts_ms = Vec::new();
    let mut robots_back_ms = Vec::new();
    let mut integrity = Vec::new();
    let mut per_cycle = Vec::new();
    let mut lost_per_cycle = Vec::new();
    for cycle in 1..=args.cycles {
        let before = lock(&ledger).triggers.len();
        let mut load_spec = LoadSpec::new(
            &format!("f1-c{cycle}"),
            targets.clone(),
            args.clients,
            (args.due_ms[0], args.due_ms[1]),
        );
        load_spec.max_triggers = Some(50_000);
        let load = Load::start(
            server.addr(),
            load_spec,
            &ledger,
            Arc::clone(&fleet.offset_us),
        );
        let kill_after = rng.range(args.kill_after_ms[0], args.kill_after_ms[1]);
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        let start_us = now_us();
        server.kill9()?;
        load.stop().await;
        let check = integrity_check(&server.database()).await?;
        let took = server.restart().await?;
        let end_us = now_us();
        lock(&ledger).faults.push(FaultMark {
            label: format!("kill -9 #{cycle}"),
            start_us,
            end_us,
        });
        let back = Instant::now();
        let online = wait_all_online(&api, &addresses, Duration::from_secs(20)).await?;
        let back = back.elapsed();
        // This cycle's 201s, looked up right after the restart: a loss is pinned to its kill.
        let accepted_ids: Vec<(i64, String)> = lock(&ledger).triggers[before..]
            .iter()
            .filter_map(|t| t.job_id().map(|id| (id, t.key.clone())))
            .collect();
        let sent = lock(&ledger).triggers.len() - before;
        let accepted = accepted_ids.len();
        let min_id = accepted_ids
            .iter()
            .map(|(id, _)| *id)
            .min()
            .unwrap_or(i64::MAX);
        let present = api.jobs_from(min_id).await?;
        let lost_now = accepted_ids
            .iter()
            .filter(|(id, key)| present.get(id).and_then(|j| j.key.as_ref()) != Some(key))
            .count();
        lost_per_cycle.push(lost_now);
        println!(
            "  f1 cycle {cycle}/{}: killed after {kill_after} ms, {accepted} of {sent} triggers accepted, \
             {lost_now} of them missing after the restart, integrity {check}, restart {:.0} ms, \
             robots back in {:.0} ms",
            args.cycles,
            ms(took),
            ms(back)
        );
        per_cycle.push(json!({
            "cycle": cycle, "kill_after_ms": kill_after, "triggers_sent": sent,
            "triggers_accepted": accepted, "lost_after_restart": lost_now, "integrity_check": check,
            "restart_ms": ms(took), "robots_back_ms": ms(back), "robots_back": online,
        }));
        restarts_ms.push(ms(took));
        robots_back_ms.push(ms(back));
        integrity.push(check);
        if !online {
            anyhow::bail!("cycle {cycle}: the robots did not come back online within 20 s");
        }
    }

    // Every job is due within seconds of its trigger: give the last ones time to arrive.
    let mut missing = wait_all_due(&ledger, 0, Duration::from_secs(30)).await;
    // A pool's robots take one job each at a time, two commits per job (the report, then the
    // next assignment), so a long burst leaves a backlog that drains at the pool's pace: keep
    // waiting as long as it shrinks.
    while args.pool && missing > 0 {
        let before = missing;
        missing = wait_delivered(&ledger, 0, Duration::from_secs(10)).await;
        if missing >= before {
            break;
        }
    }
    let verdict = check_ledger(
        &api,
        &ledger,
        0,
        Duration::from_millis(args.in_flight_window_ms),
    )
    .await?;
    fleet.shutdown().await;
    let stopped = server.stop().await?;
    let final_check = integrity_check(&server.database()).await?;
    integrity.push(final_check.clone());

    report_verdict(report, &verdict);
    if args.pool {
        // Assignment, not one robot taking everything: each robot of the pool ran some jobs.
        let per_robot: std::collections::BTreeMap<String, usize> = {
            let ledger = lock(&ledger);
            let mut counts: std::collections::BTreeMap<String, usize> =
                addresses.iter().map(|a| (a.clone(), 0)).collect();
            for delivery in &ledger.deliveries {
                *counts.entry(delivery.robot.clone()).or_default() += 1;
            }
            counts
        };
        report.check(
            "every robot of the pool was assigned jobs",
            per_robot.values().all(|&n| n > 0),
            format!(
                "deliveries per robot: {:?}",
                per_robot.values().collect::<Vec<_>>()
            ),
        );
        report.figure("deliveries_per_robot", &per_robot);
    }
    let lost_after_restarts: usize = lost_per_cycle.iter().sum();
    report.check(
        "every trigger that got 201 exists right after the restart that follows its kill",
        lost_after_restarts == 0,
        format!("{lost_after_restarts} missing, per cycle {lost_per_cycle:?}"),
    );
    report.check(
        "every due job is delivered",
        missing == 0 && verdict.count(crate::checker::Fate::Delivered) == verdict.accepted,
        format!(
            "{} of {} accepted jobs delivered; {missing} due but not received after 30 s{}",
            verdict.count(crate::checker::Fate::Delivered),
            verdict.accepted,
            if args.pool {
                " (and then 10 s more at a time while the pool's backlog shrank)"
            } else {
                ""
            }
        ),
    );
    let bad: Vec<&String> = integrity.iter().filter(|c| c.as_str() != "ok").collect();
    report.check(
        "PRAGMA integrity_check = ok after every kill",
        bad.is_empty(),
        format!(
            "{} checks (one per kill and one at the end), {} not ok{}",
            integrity.len(),
            bad.len(),
            bad.first().map(|b| format!(": {b}")).unwrap_or_default()
        ),
    );
    let max_restart = restarts_ms.iter().copied().fold(0.0, f64::max);
    // How close to its kill each duplicated job's first delivery came (the in-flight window's
    // justification).
    let duplicate_gaps_ms: Vec<f64> = {
        let ledger = lock(&ledger);
        verdict
            .duplicates
            .iter()
            .filter_map(|dup| {
                let first = ledger
                    .deliveries
                    .iter()
                    .filter(|d| d.job_id == dup.job_id)
                    .map(|d| d.received_us)
                    .min()?;
                let kill = ledger.faults.iter().find(|f| f.end_us >= first)?;
                Some(((kill.start_us - first) as f64 / 100.0).round() / 10.0)
            })
            .collect()
    };
    report.figure("cycles", args.cycles);
    report.figure("triggers_accepted", verdict.accepted);
    report.figure("lost", verdict.lost());
    report.figure("duplicates", verdict.duplicates.len());
    report.figure(
        "duplicate_first_delivery_before_kill_ms",
        &duplicate_gaps_ms,
    );
    report.figure("restart_ms", &restarts_ms);
    report.figure("restart_ms_max", max_restart);
    report.figure("robots_back_ms", &robots_back_ms);
    report.figure("integrity_check", &integrity);
    report.figure("per_cycle", per_cycle);
    report.figure("final_stop_exit", stopped.map(|s| s.to_string()));
    Ok(())
}
