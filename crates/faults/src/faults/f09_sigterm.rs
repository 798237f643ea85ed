//! F9: SIGTERM while robots are connected and triggers flow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use rpa_testkit::HttpClient;
use serde_json::json;

use super::{Env, Load, LoadSpec, check_ledger, report_verdict, wait_all_due, wait_all_online};
use crate::api::{Api, Target, trigger};
use crate::checker::FaultMark;
use crate::clock::{floor_ms, now_us};
use crate::fleet::{Fleet, RobotSpec, SharedLedger, lock};
use crate::report::{FaultReport, ms};
use crate::server::{self, Server, SpecExt};

#[derive(Debug, Clone, Args)]
pub struct F9Args {
    /// Concurrent clients posting triggers.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Connected robots (half extended, half field robots).
    #[arg(long, default_value_t = 6)]
    pub robots: usize,
    /// How long the load runs before SIGTERM, ms.
    #[arg(long, default_value_t = 1500)]
    pub load_ms: u64,
}

/// New connections tried after the signal: (tried, answered with a 2xx).
async fn probe_new_connections(
    addr: std::net::SocketAddr,
    robot: &Target,
    ledger: &SharedLedger,
    until: Duration,
) -> (usize, usize, Vec<String>) {
    let started = Instant::now();
    let (mut tried, mut accepted) = (0, 0);
    let mut answers = Vec::new();
    while started.elapsed() < until {
        let mut http = HttpClient::new(addr).timeout(Duration::from_secs(2));
        let record = trigger(
            &mut http,
            &format!("f9-after-term-{tried}"),
            robot,
            floor_ms(now_us() + 500_000),
            0,
        )
        .await;
        tried += 1;
        if record.job_id().is_some() {
            accepted += 1;
        }
        if answers.len() < 3 {
            answers.push(format!("{:?}", record.answer));
        }
        lock(ledger).triggers.push(record);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (tried, accepted, answers)
}

pub async fn run(env: &Env, args: &F9Args, report: &mut FaultReport) -> Result<()> {
    report.note(format!(
        "{} clients post triggers for {} connected robots for {} ms, then SIGTERM; 200 ms later \
         new connections are tried while the server stops; it is then started again on the same \
         folder and the ledger checked",
        args.clients, args.robots, args.load_ms
    ));
    let dir = env.work_dir("f9")?;
    let spec = server::spec(&env.server_bin, dir.path()).unlimited_robot_rate();
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let ledger = SharedLedger::default();
    let mut fleet = Fleet::new(&server.ws_url(), Arc::clone(&ledger));
    for index in 0..args.robots.max(1) {
        fleet.add(RobotSpec::new(900 + index, index % 2 == 0));
    }
    if !wait_all_online(&api, &fleet.addresses(), Duration::from_secs(10)).await? {
        anyhow::bail!("the robots did not come online");
    }
    let closes_before: Vec<usize> = fleet
        .robots
        .iter()
        .map(|r| r.state.closes.lock().map(|c| c.len()).unwrap_or(0))
        .collect();
    let spec = LoadSpec::new("f9", fleet.targets(), args.clients, (100, 3000));
    let load = Load::start(server.addr(), spec, &ledger, Arc::clone(&fleet.offset_us));
    tokio::time::sleep(Duration::from_millis(args.load_ms)).await;

    let term_us = now_us();
    let term = Instant::now();
    server.signal("TERM")?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let robot = fleet.targets()[0].clone();
    let probe = probe_new_connections(server.addr(), &robot, &ledger, Duration::from_millis(800));
    let exit = server.wait_exit(Duration::from_secs(10));
    let ((tried, accepted_after, answers), exit) = tokio::join!(probe, exit);
    let exit = exit?;
    let exit_after = term.elapsed();
    load.stop().await;
    if exit.is_none() {
        server.kill9()?;
    }
    // Close codes the robots saw at the shutdown.
    let codes: Vec<Option<Option<u16>>> = fleet
        .robots
        .iter()
        .zip(&closes_before)
        .map(|(r, before)| {
            r.state
                .closes
                .lock()
                .ok()
                .and_then(|c| c.get(*before).copied())
        })
        .collect();
    let connected_at_term = codes.len();

    let took = server.restart().await?;
    lock(&ledger).faults.push(FaultMark {
        label: "SIGTERM".to_owned(),
        start_us: term_us,
        end_us: now_us(),
    });
    let online = wait_all_online(&api, &fleet.addresses(), Duration::from_secs(20)).await?;
    let missing = wait_all_due(&ledger, 0, Duration::from_secs(30)).await;
    let verdict = check_ledger(&api, &ledger, 0, Duration::from_secs(2)).await?;
    let accepted_total = verdict.accepted;

    report.check(
        "exits 0 within 10 s",
        exit.is_some_and(|s| s.success()) && exit_after <= Duration::from_secs(10),
        format!(
            "exit status {:?} after {} ms",
            exit.map(|s| s.to_string()),
            ms(exit_after)
        ),
    );
    report.check(
        "closes robot sockets with 1001",
        codes.iter().all(|c| *c == Some(Some(1001))),
        format!("{connected_at_term} robots, close codes seen: {codes:?}"),
    );
    report.check(
        "stops accepting: new connections after the signal get no 2xx",
        tried > 0 && accepted_after == 0,
        format!("{tried} new connections tried 200-1000 ms after SIGTERM, {accepted_after} accepted; first answers: {answers:?}"),
    );
    report.check(
        "finishes commits: every trigger that got 201 exists after the restart",
        verdict.lost() == 0 && accepted_total > 0,
        format!("{accepted_total} accepted, {} lost", verdict.lost()),
    );
    report.check(
        "after the restart every due job is delivered",
        online && missing == 0,
        format!("robots back: {online}; {missing} due jobs not received"),
    );
    report_verdict(report, &verdict);
    report.figure(
        "shutdown",
        json!({"exit_ms": ms(exit_after), "exit_status": exit.map(|s| s.to_string()),
               "restart_ms": ms(took), "triggers_before_term": load_sent(&ledger, term_us)}),
    );
    fleet.shutdown().await;
    server.stop().await?;
    Ok(())
}

fn load_sent(ledger: &SharedLedger, before_us: i64) -> usize {
    lock(ledger)
        .triggers
        .iter()
        .filter(|t| t.sent_us < before_us)
        .count()
}
