//! Every scenario with tiny sizes, each against its own freshly started server: proves the
//! scenarios work (CI), judges no timing.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::{
    Common, P1Args, P2Args, P3Args, P4Args, P5Args, P6Args, P7Args, P8Args, P9Args, SmokeArgs,
};
use crate::report::Report;

/// The reports of a smoke run, and the scenarios that could not run.
pub struct SmokeOutcome {
    pub reports: Vec<Report>,
    pub errors: Vec<(String, String)>,
    pub elapsed: Duration,
}

impl SmokeOutcome {
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.reports.iter().all(|r| r.failures.is_empty())
    }
}

fn record(outcome: &mut SmokeOutcome, name: &str, result: Result<Report>, common: &Common) {
    match result {
        Ok(mut report) => {
            report.machine = crate::machine::Machine::probe(common.server_bin.as_deref());
            println!("{}", report.render());
            outcome.reports.push(report);
        }
        Err(error) => {
            println!("== {name} ==\nCOULD NOT RUN: {error:#}\n");
            outcome.errors.push((name.to_owned(), format!("{error:#}")));
        }
    }
}

pub(super) async fn run(args: &SmokeArgs) -> SmokeOutcome {
    let started = Instant::now();
    let mut common = args.common.clone();
    common.json = None;
    // Two worker processes (two source addresses) even at this size.
    common.robots_per_process = args.robots.div_ceil(2).max(1);
    let robots = args.robots.max(2);
    let d = args.duration;
    let mut outcome = SmokeOutcome {
        reports: Vec::new(),
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };

    // P1 with a short ping interval, so that pings are seen in a short hold.
    let mut p1_common = common.clone();
    if !p1_common
        .server_args
        .iter()
        .any(|a| a.starts_with("--ping-interval"))
    {
        p1_common.server_args.push("--ping-interval=1s".to_owned());
    }
    let p1 = P1Args {
        common: p1_common,
        robots,
        duration: d.max(Duration::from_millis(1500)),
        sample_every: Duration::from_millis(500),
        register_timeout: Duration::from_secs(30),
    };
    record(
        &mut outcome,
        "p1-idle",
        super::p1_idle::run(&p1).await,
        &common,
    );

    let p2 = P2Args {
        common: common.clone(),
        robots,
        settle: Duration::from_millis(300),
        register_timeout: Duration::from_secs(30),
    };
    record(
        &mut outcome,
        "p2-memory",
        super::p2_memory::run(&p2).await,
        &common,
    );

    let p3 = P3Args {
        common: common.clone(),
        clients: 8,
        duration: d,
        robots: 2,
        webhook: false,
    };
    record(
        &mut outcome,
        "p3-triggers",
        super::p3_triggers::run(&p3).await,
        &common,
    );

    let p4 = P4Args {
        common: common.clone(),
        robots,
        clients: 8,
        duration: d,
        drain_timeout: Duration::from_secs(30),
        // 5 jobs/s per robot: well under the server's 20 frames/s per robot.
        max_rate: 5 * robots,
    };
    record(
        &mut outcome,
        "p4-e2e",
        super::p4_e2e::run(&p4).await,
        &common,
    );

    let p5 = P5Args {
        common: common.clone(),
        robots,
        clients: 8,
        lead: Duration::from_secs(1),
        timeout: Duration::from_secs(20),
        poll_every: Duration::from_millis(50),
        register_timeout: Duration::from_secs(30),
    };
    record(
        &mut outcome,
        "p5-fanout",
        super::p5_fanout::run(&p5).await,
        &common,
    );

    let p6 = P6Args {
        common: common.clone(),
        robots,
        rate: 100,
        duration: d,
        lead: Duration::from_secs(1),
        clients: 8,
        timeout: Duration::from_secs(20),
    };
    record(
        &mut outcome,
        "p6-lateness",
        super::p6_lateness::run(&p6).await,
        &common,
    );

    if common.server_bin.is_some() {
        let p7 = P7Args {
            common: common.clone(),
            pending: args.pending,
            clients: 16,
            pending_robots: 10,
            due_after: Duration::from_millis(500),
            down: Duration::from_millis(700),
            timeout: Duration::from_secs(30),
            fill_timeout: Duration::from_secs(60),
        };
        record(
            &mut outcome,
            "p7-restart",
            super::p7_restart::run(&p7).await,
            &common,
        );
    } else {
        println!("== p7-restart ==\nskipped: it needs --server-bin\n");
    }

    let p8 = P8Args {
        common: common.clone(),
        robots,
        no_wait_offline: false,
        retries: 3,
        timeout: Duration::from_secs(30),
        register_timeout: Duration::from_secs(30),
    };
    record(
        &mut outcome,
        "p8-reconnect",
        super::p8_reconnect::run(&p8).await,
        &common,
    );

    let p9 = P9Args {
        common: common.clone(),
        robots,
        jobs: 10 * robots,
        clients: 8,
        lead: Duration::from_secs(2),
        timeout: Duration::from_secs(60),
        register_timeout: Duration::from_secs(30),
    };
    record(
        &mut outcome,
        "p9-pool",
        super::p9_pool::run(&p9).await,
        &common,
    );

    outcome.elapsed = started.elapsed();
    outcome
}
