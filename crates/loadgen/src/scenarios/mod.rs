//! The scenarios of quality.md (P1-P8) and the smoke run of all of them.

mod p1_idle;
mod p2_memory;
mod p3_triggers;
mod p4_e2e;
mod p5_fanout;
mod p6_lateness;
mod p7_restart;
mod p8_reconnect;
mod p9_pool;
mod robots;
mod smoke;
mod webhook_sink;

use std::time::{Duration, Instant};

use anyhow::bail;
use anyhow::{Result, anyhow};
use rpa_testkit::HttpClient;

use crate::cli::{Common, Scenario};
use crate::fleet::{Fleet, FleetSpec};
use crate::http::{self, parse_base_url};
use crate::machine::Machine;
use crate::metrics::{self, Metrics};
use crate::report::Report;
use crate::server::{ServerSpec, Started, Target};
use crate::wire::ConnectReport;

pub use smoke::SmokeOutcome;

/// What a run produced: one report, or the reports of a smoke run.
pub enum Outcome {
    One(Box<Report>),
    Smoke(SmokeOutcome),
}

/// Runs a scenario. `Err` means it could not run.
pub async fn run(scenario: Scenario) -> Result<Outcome> {
    Ok(match scenario {
        Scenario::P1Idle(args) => {
            Outcome::One(Box::new(finish(p1_idle::run(&args).await?, &args.common)))
        }
        Scenario::P2Memory(args) => {
            Outcome::One(Box::new(finish(p2_memory::run(&args).await?, &args.common)))
        }
        Scenario::P3Triggers(args) => Outcome::One(Box::new(finish(
            p3_triggers::run(&args).await?,
            &args.common,
        ))),
        Scenario::P4E2e(args) => {
            Outcome::One(Box::new(finish(p4_e2e::run(&args).await?, &args.common)))
        }
        Scenario::P5Fanout(args) => {
            Outcome::One(Box::new(finish(p5_fanout::run(&args).await?, &args.common)))
        }
        Scenario::P6Lateness(args) => Outcome::One(Box::new(finish(
            p6_lateness::run(&args).await?,
            &args.common,
        ))),
        Scenario::P7Restart(args) => Outcome::One(Box::new(finish(
            p7_restart::run(&args).await?,
            &args.common,
        ))),
        Scenario::P8Reconnect(args) => Outcome::One(Box::new(finish(
            p8_reconnect::run(&args).await?,
            &args.common,
        ))),
        Scenario::P9Pool(args) => {
            Outcome::One(Box::new(finish(p9_pool::run(&args).await?, &args.common)))
        }
        Scenario::Smoke(args) => Outcome::Smoke(smoke::run(&args).await),
        Scenario::Worker(_) => bail!("the worker is not a scenario"),
    })
}

fn finish(mut report: Report, common: &Common) -> Report {
    report.machine = Machine::probe(common.server_bin.as_deref());
    report
}

/// Common parameters every report lists.
fn common_params(report: &mut Report, common: &Common, target: &Target) {
    report.param(
        "server",
        match &common.server_bin {
            Some(bin) => format!("started: {}", bin.display()),
            None => format!("attached: {}", target.addr),
        },
    );
    if !common.server_args.is_empty() {
        report.param("server_args", common.server_args.join(" "));
    }
    report.param("dialect", common.dialect.key());
    report.param("extended", common.extended);
    report.param("robots_per_process", common.robots_per_process);
}

/// The server under test, started or attached; the start timing when started.
async fn open_target(common: &Common, label: &str) -> Result<(Target, Option<Started>)> {
    if let Some(url) = &common.url {
        let addr = parse_base_url(url)?;
        let others = common
            .also_url
            .iter()
            .map(|url| parse_base_url(url))
            .collect::<Result<Vec<_>>>()?;
        return Ok((Target::attach(addr, others, common.server_pid), None));
    }
    let Some(bin) = &common.server_bin else {
        bail!(
            "give --server-bin PATH to start a server (e.g. target/release/socket-server) or --url URL to attach to one"
        );
    };
    let spec = ServerSpec {
        bin: bin.clone(),
        args: common.server_args.clone(),
        dir: common.server_dir.clone(),
        keep_dir: common.keep_server_dir,
        label: label.to_owned(),
    };
    let (target, started) = Target::spawn(spec).await?;
    Ok((target, Some(started)))
}

/// Runs `body` against the server, then stops a started server whatever happened.
async fn with_target<F>(common: &Common, label: &str, report: &mut Report, body: F) -> Result<()>
where
    F: AsyncFnOnce(&mut Target, &mut Report) -> Result<()>,
{
    let (mut target, _) = open_target(common, label).await?;
    common_params(report, common, &target);
    let started = Instant::now();
    let outcome = body(&mut target, report).await;
    report.elapsed_s = started.elapsed().as_secs_f64();
    if let Some(dir) = target.dir()
        && common.keep_server_dir
    {
        report.note(format!("server folder kept: {}", dir.display()));
    }
    target.shutdown().await?;
    outcome
}

fn fleet_spec(common: &Common, target: &Target, robots: usize, report: bool) -> FleetSpec {
    FleetSpec {
        robots,
        per_process: common.robots_per_process,
        servers: target.instances(),
        path: common.ws_path.clone(),
        prefix: common.robot_prefix.clone(),
        dialect: common.dialect,
        extended: common.extended,
        report,
    }
}

/// Reads /metrics until `done` holds or `timeout` passes; the last metrics and whether `done`
/// held, with the time it took.
async fn wait_metrics(
    http: &mut HttpClient,
    timeout: Duration,
    every: Duration,
    done: impl Fn(&Metrics) -> bool,
) -> Result<(Metrics, Option<Duration>)> {
    let started = Instant::now();
    loop {
        let metrics = metrics::fetch(http).await?;
        if done(&metrics) {
            return Ok((metrics, Some(started.elapsed())));
        }
        if started.elapsed() >= timeout {
            return Ok((metrics, None));
        }
        tokio::time::sleep(every).await;
    }
}

/// Starts the fleet, connects every robot and waits until the server counts them all. Adds
/// the registration figures to the report.
async fn register_fleet(
    spec: FleetSpec,
    common: &Common,
    http: &mut HttpClient,
    timeout: Duration,
    report: &mut Report,
) -> Result<(Fleet, u64)> {
    let others = spec.servers[1..].to_vec();
    let base = metrics::fetch(http).await?.robots_connected() + connected(&others).await?;
    let robots = spec.robots;
    let mut fleet = Fleet::start(spec).await?;
    report.param("worker_processes", fleet.processes());
    let started = Instant::now();
    let connect = fleet
        .connect(None, common.connect_concurrency, Duration::from_secs(30), 2)
        .await?;
    // With several instances, the robots connected to the others are counted too.
    let started_wait = Instant::now();
    let (registered, took) = loop {
        let total = metrics::fetch(http).await?.robots_connected() + connected(&others).await?;
        let registered = total.saturating_sub(base);
        if registered >= robots as u64 {
            break (registered, Some(started_wait.elapsed()));
        }
        if started_wait.elapsed() > timeout {
            break (registered, None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    report.figure("robots registered", registered, "robots");
    match took {
        Some(_) => {
            let seconds = started.elapsed().as_secs_f64();
            report.figure("registration time (all robots)", seconds, "s");
            report.figure(
                "registration rate",
                crate::stats::rate(robots as u64, seconds),
                "robots/s",
            );
        }
        None => report.fail(format!(
            "only {registered} of {robots} robots registered within {timeout:?} ({})",
            connect_summary(&connect)
        )),
    }
    if connect.failed_attempts > 0 {
        report.note(format!("setup connections: {}", connect_summary(&connect)));
    }
    Ok((fleet, base))
}

/// Robots connected to these instances, summed.
async fn connected(instances: &[std::net::SocketAddr]) -> Result<u64> {
    let mut total = 0;
    for addr in instances {
        total += metrics::fetch(&mut http::client(*addr))
            .await?
            .robots_connected();
    }
    Ok(total)
}

fn connect_summary(connect: &ConnectReport) -> String {
    let errors: Vec<String> = connect
        .errors
        .iter()
        .map(|(error, n)| format!("{n}× {error}"))
        .collect();
    format!(
        "{} connected, {} failed, {} failed attempts{}{}",
        connect.connected + connect.already,
        connect.failed,
        connect.failed_attempts,
        if errors.is_empty() { "" } else { ": " },
        errors.join("; ")
    )
}

/// The server's own lateness histogram (run_at to the sending handed to the connection)
/// between two readings: the bucket bounds holding p50, p99 and the maximum.
fn server_lateness(report: &mut Report, before: &Metrics, after: &Metrics) {
    let name = "rpa_delivery_lateness_seconds";
    for (label, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        if let Some(bound) = metrics::histogram_quantile(before, after, name, q) {
            let value = if bound.is_finite() {
                serde_json::Value::from(bound * 1000.0)
            } else {
                serde_json::Value::from("beyond the last bucket")
            };
            report.figure(
                &format!("server-side lateness {label} (histogram bucket bound)"),
                value,
                "ms",
            );
        }
    }
}

fn require_pid(target: &Target, what: &str) -> Result<u32> {
    target.pid().ok_or_else(|| {
        anyhow!("{what} needs the server's PID: start it with --server-bin or give --server-pid")
    })
}
