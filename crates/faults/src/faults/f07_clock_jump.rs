//! F7: the server's clock jumps forward 1 h, then back 1 h, while jobs wait and fall due. The
//! server runs under libfaketime with an offset file the harness rewrites.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, ValueEnum};
use rpa_testkit::HttpClient;
use rpa_testkit::procfs::cpu_seconds;
use serde_json::{Value, json};

use super::{Env, check_ledger, report_verdict_as, wait_all_online};
use crate::api::{Api, Target, trigger, wait_for};
use crate::clock::{floor_ms, now_us};
use crate::faketime::FakeClock;
use crate::fleet::{Fleet, RobotSpec, SharedLedger, lock};
use crate::report::FaultReport;
use crate::server::{self, Server};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// Only the wall clock jumps (CLOCK_REALTIME), as with an NTP step: the realistic case.
    Realtime,
    /// libfaketime's default: CLOCK_MONOTONIC jumps with it (impossible on a real machine).
    Monotonic,
    /// Both, one after the other.
    Both,
}

#[derive(Debug, Clone, Args)]
pub struct F7Args {
    /// Which clocks jump.
    #[arg(long, value_enum, default_value = "realtime")]
    pub variant: Variant,
    /// The jump, seconds.
    #[arg(long, default_value_t = 3600)]
    pub jump_secs: i64,
}

struct Jumps<'a> {
    http: HttpClient,
    ledger: &'a SharedLedger,
    offset: &'a AtomicI64,
    robots: Vec<Target>,
    groups: Vec<(String, Vec<String>)>,
}

impl Jumps<'_> {
    /// Posts `count` jobs due `due_ms` (ms, spread by 300 ms) from the server's now.
    async fn post(&mut self, group: &str, count: usize, due_ms: i64) {
        let mut keys = Vec::new();
        for n in 0..count {
            let key = format!("f7-{group}-{n}");
            let server_now = now_us() + self.offset.load(Ordering::Relaxed);
            let due = floor_ms(server_now + (due_ms + 300 * n as i64) * 1_000);
            let robot = self.robots[n % self.robots.len()].clone();
            let record = trigger(&mut self.http, &key, &robot, due, 0).await;
            lock(self.ledger).triggers.push(record);
            keys.push(key);
        }
        self.groups.push((group.to_owned(), keys));
    }

    fn received(&self, group: &str) -> (usize, usize) {
        let keys = self
            .groups
            .iter()
            .find(|(name, _)| name == group)
            .map(|(_, keys)| keys.clone())
            .unwrap_or_default();
        let ledger = lock(self.ledger);
        let got = keys
            .iter()
            .filter(|key| {
                ledger
                    .deliveries
                    .iter()
                    .any(|d| d.key.as_ref() == Some(*key))
            })
            .count();
        (got, keys.len())
    }

    async fn wait(&self, group: &str, limit: Duration) -> Result<Option<Duration>> {
        let started = Instant::now();
        let done = wait_for(limit, Duration::from_millis(20), || async {
            let (got, of) = self.received(group);
            Ok(got == of)
        })
        .await?;
        Ok(done.then(|| started.elapsed()))
    }

    /// Deliveries per job of a group and the lateness of each on the server's timeline, ms.
    fn deliveries(&self, group: &str) -> Value {
        let keys = self
            .groups
            .iter()
            .find(|(name, _)| name == group)
            .map(|(_, keys)| keys.clone())
            .unwrap_or_default();
        let ledger = lock(self.ledger);
        let per_job: Vec<Value> = keys
            .iter()
            .map(|key| {
                let got: Vec<&crate::checker::Delivery> = ledger
                    .deliveries
                    .iter()
                    .filter(|d| d.key.as_ref() == Some(key))
                    .collect();
                json!({
                    "key": key,
                    "deliveries": got.len(),
                    "lateness_ms": got.iter().filter_map(|d| d.due_us.map(|due| (d.received_us - due) / 1000)).collect::<Vec<_>>(),
                })
            })
            .collect();
        Value::Array(per_job)
    }
}

pub async fn run(env: &Env, args: &F7Args, report: &mut FaultReport) -> Result<()> {
    let Some(library) = env.libfaketime.clone() else {
        report.check(
            "libfaketime is installed",
            false,
            "not found: apt-get install -y faketime (or pass --libfaketime PATH)",
        );
        return Ok(());
    };
    report.note(format!(
        "the server runs with LD_PRELOAD={} and FAKETIME_TIMESTAMP_FILE (FAKETIME_NO_CACHE=1); the \
         harness writes +{} s, then +0 s into it",
        library.display(),
        args.jump_secs
    ));
    let variants: &[(bool, &str)] = match args.variant {
        Variant::Realtime => &[(false, "realtime")],
        Variant::Monotonic => &[(true, "monotonic")],
        Variant::Both => &[(false, "realtime"), (true, "monotonic")],
    };
    for (fake_monotonic, label) in variants {
        run_variant(env, args, report, &library, *fake_monotonic, label).await?;
    }
    Ok(())
}

async fn run_variant(
    env: &Env,
    args: &F7Args,
    report: &mut FaultReport,
    library: &std::path::Path,
    fake_monotonic: bool,
    label: &str,
) -> Result<()> {
    let dir = env.work_dir(&format!("f7-{label}"))?;
    let offset = Arc::new(AtomicI64::new(0));
    let clock = FakeClock::new(library, dir.path(), fake_monotonic, Arc::clone(&offset))?;
    let spec = clock.apply(server::spec(&env.server_bin, dir.path()));
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let ledger = SharedLedger::default();
    let mut fleet = Fleet::new(&server.ws_url(), Arc::clone(&ledger));
    fleet.offset_us = Arc::clone(&offset);
    fleet.add(RobotSpec::new(701, false));
    fleet.add(RobotSpec::new(702, true));
    if !wait_all_online(&api, &fleet.addresses(), Duration::from_secs(10)).await? {
        anyhow::bail!("the robots did not come online");
    }
    let jump_ms = args.jump_secs * 1000;
    let mut jumps = Jumps {
        http: HttpClient::new(server.addr()),
        ledger: &ledger,
        offset: &offset,
        robots: fleet.targets(),
        groups: Vec::new(),
    };
    // Before: due soon, due within the hour, due after the hour.
    jumps.post("a-soon", 3, 1500).await;
    jumps.post("b-within-the-hour", 3, jump_ms / 2).await;
    jumps.post("c-after-two-hours", 2, 2 * jump_ms).await;
    let a = jumps.wait("a-soon", Duration::from_secs(10)).await?;

    // Forward: what the jump overtook is due at once; new jobs run on the new clock.
    clock.set(args.jump_secs).await?;
    let b = jumps
        .wait("b-within-the-hour", Duration::from_secs(10))
        .await?;
    jumps.post("d-after-forward", 3, 1500).await;
    jumps.post("e-straddles-back", 3, 20_000).await;
    let d = jumps
        .wait("d-after-forward", Duration::from_secs(10))
        .await?;

    // Back: nothing runs again, nothing the jump put in the future runs, new jobs run on time.
    let cpu_before = server.pid().and_then(cpu_seconds);
    let back_at = Instant::now();
    clock.set(0).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    jumps.post("f-after-back", 3, 1500).await;
    let f = jumps.wait("f-after-back", Duration::from_secs(15)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_after = server.pid().and_then(cpu_seconds);
    let back_elapsed = back_at.elapsed().as_secs_f64();
    let cpu_share = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => {
            Some(((after - before) / back_elapsed * 1000.0).round() / 1000.0)
        }
        _ => None,
    };

    let name = |rule: &str| format!("{label}: {rule}");
    let checked = check_ledger(
        &api,
        &ledger,
        offset.load(Ordering::Relaxed),
        Duration::from_secs(1),
    )
    .await;
    report.check(
        &name("the API still answers after the jumps"),
        checked.is_ok(),
        match &checked {
            Ok(_) => "GET /api/jobs and /api/robots answered".to_owned(),
            Err(error) => format!("{error:#}"),
        },
    );
    let verdict = checked.unwrap_or_default();
    let once = [
        "a-soon",
        "b-within-the-hour",
        "d-after-forward",
        "f-after-back",
    ];
    let counts: Vec<(String, usize, usize)> = once
        .iter()
        .map(|group| {
            let (got, of) = jumps.received(group);
            ((*group).to_owned(), got, of)
        })
        .collect();
    report.check(
        &name("due jobs run once (before, overtaken by the forward jump, after each jump)"),
        counts.iter().all(|(_, got, of)| got == of) && verdict.duplicates.is_empty(),
        format!(
            "received/triggered {:?}; {} jobs delivered more than once",
            counts
                .iter()
                .map(|(g, got, of)| format!("{g} {got}/{of}"))
                .collect::<Vec<_>>(),
            verdict.duplicates.len()
        ),
    );
    let (c_got, _) = jumps.received("c-after-two-hours");
    let (e_got, _) = jumps.received("e-straddles-back");
    report.check(
        &name("nothing runs early (on the server's clock), nor what the back jump moved an hour away"),
        verdict.early.is_empty() && c_got == 0 && e_got == 0,
        format!(
            "{} early deliveries; due after two hours: {c_got} received; due 20 s after the forward jump, an hour away after the back jump: {e_got} received",
            verdict.early.len()
        ),
    );
    report.check(
        &name("the jobs the forward jump overtook run at once"),
        b.is_some_and(|t| t <= Duration::from_secs(5)),
        format!("received {:?} after the jump", b),
    );
    report.check(
        &name("after the back jump new jobs run on time"),
        f.is_some(),
        format!(
            "due 1.5-2.1 s after posting, all received {:?} after posting; server CPU while the clock was back: {:?} of a core",
            f, cpu_share
        ),
    );
    report_verdict_as(report, label, &verdict);
    report.figure(
        label,
        json!({
            "fake_monotonic": fake_monotonic,
            "wait_s": {"a": a.map(|d| d.as_secs_f64()), "b_after_forward": b.map(|d| d.as_secs_f64()),
                       "d": d.map(|d| d.as_secs_f64()), "f_after_back": f.map(|d| d.as_secs_f64())},
            "deliveries": {"a": jumps.deliveries("a-soon"), "b": jumps.deliveries("b-within-the-hour"),
                            "d": jumps.deliveries("d-after-forward"), "f": jumps.deliveries("f-after-back")},
            "cpu_share_after_back_jump": cpu_share,
        }),
    );
    fleet.shutdown().await;
    server.stop().await?;
    Ok(())
}
