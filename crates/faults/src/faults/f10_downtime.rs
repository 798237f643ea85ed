//! F10: the server is down for ten minutes while a per-minute cron schedule is due: one
//! catch-up run, not ten.
//!
//! Variants: `faketime` (default when libfaketime is installed: a real `* * * * *` schedule,
//! the server stopped and started again with its clock ten minutes and some seconds later, so
//! ten occurrences pass in about a second of real downtime), `seconds` (a `* * * * * *` schedule
//! and a real 10 s outage: ten per-second occurrences missed), `long` (`--long`: the real
//! thing, a per-minute schedule and ten real minutes down).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::{Env, wait_all_online};
use crate::api::{Api, Target, trigger_body, wait_for};
use crate::checker::ServerJob;
use crate::clock::{now_us, rfc3339};
use crate::faketime::FakeClock;
use crate::fleet::{Fleet, RobotSpec, SharedLedger, lock};
use crate::report::FaultReport;
use crate::server::{self, Server};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// Per-minute schedule, ten minutes skipped on a faked clock (libfaketime).
    Faketime,
    /// Per-second schedule, a real 10 s outage.
    Seconds,
}

#[derive(Debug, Clone, Args)]
pub struct F10Args {
    /// The fast variant (default: faketime when libfaketime is installed, else seconds).
    #[arg(long, value_enum)]
    pub variant: Option<Variant>,
    /// The real per-minute schedule with ten real minutes down (about 12 minutes).
    #[arg(long)]
    pub long: bool,
}

/// How one variant runs.
struct Plan {
    label: &'static str,
    cron: &'static str,
    /// Occurrences the outage covers.
    period_s: i64,
    /// Real sleep while the server is down.
    outage: Duration,
    /// Seconds the server's clock moves forward while it is down (faketime only).
    shift_s: i64,
}

pub async fn run(env: &Env, args: &F10Args, report: &mut FaultReport) -> Result<()> {
    let variant = args.variant.unwrap_or(if env.libfaketime.is_some() {
        Variant::Faketime
    } else {
        Variant::Seconds
    });
    let plan = if args.long {
        Plan {
            label: "long",
            cron: "* * * * *",
            period_s: 60,
            outage: Duration::from_secs(600),
            shift_s: 0,
        }
    } else if variant == Variant::Faketime {
        Plan {
            label: "faketime",
            cron: "* * * * *",
            period_s: 60,
            outage: Duration::ZERO,
            shift_s: 600 + 45,
        }
    } else {
        Plan {
            label: "seconds",
            cron: "* * * * * *",
            period_s: 1,
            outage: Duration::from_secs(10),
            shift_s: 0,
        }
    };
    report.figure("variant", plan.label);
    report.note(match plan.label {
        "faketime" => "variant faketime: schedule `* * * * *`, the server's clock (libfaketime, wall clock only) set a few seconds before a minute boundary; after the first run the server is stopped (SIGTERM) and started again with its clock 10 min 45 s later, so ten occurrences were missed; the next regular occurrence follows about 15 s after the restart".to_owned(),
        "seconds" => "variant seconds (no libfaketime): schedule `* * * * * *` and a real 10 s outage (SIGTERM, start again), so about ten per-second occurrences were missed".to_owned(),
        _ => "variant long: schedule `* * * * *` and a real 10 min outage".to_owned(),
    });
    let fake = plan.shift_s > 0;
    let library = match (fake, &env.libfaketime) {
        (true, Some(library)) => Some(library.clone()),
        (true, None) => {
            anyhow::bail!("the faketime variant needs libfaketime (apt-get install -y faketime)")
        }
        (false, _) => None,
    };

    let dir = env.work_dir("f10")?;
    let offset = Arc::new(AtomicI64::new(0));
    let mut spec = server::spec(&env.server_bin, dir.path());
    let clock = match &library {
        Some(library) => {
            // Start a few seconds before a minute boundary of the server's clock.
            let now_s = now_us() / 1_000_000;
            let boundary = (now_s + 10) / 60 * 60 + 60;
            offset.store((boundary - 4 - now_s) * 1_000_000, Ordering::Relaxed);
            let clock = FakeClock::new(library, dir.path(), false, Arc::clone(&offset))?;
            spec = clock.apply(spec);
            Some(clock)
        }
        None => None,
    };
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let ledger = SharedLedger::default();
    let mut fleet = Fleet::new(&server.ws_url(), Arc::clone(&ledger));
    fleet.offset_us = Arc::clone(&offset);
    fleet.add(RobotSpec::new(1001, false));
    let robot: Target = fleet.targets()[0].clone();
    if !wait_all_online(&api, &fleet.addresses(), Duration::from_secs(10)).await? {
        anyhow::bail!("the robot did not come online");
    }
    let mut body = trigger_body("f10-schedule", &robot, 0, 0);
    body["Schedule"] = json!({"cron": plan.cron, "timezone": "UTC"});
    let (status, created) = api.post("/api/jobs", &body).await?;
    let Some(schedule_id) = created["id"].as_i64().filter(|_| status == 201) else {
        anyhow::bail!("the schedule was refused: {status} {created}");
    };
    let server_now = || now_us() + offset.load(Ordering::Relaxed);
    let instances = |jobs: &std::collections::HashMap<i64, ServerJob>| {
        let mut list: Vec<ServerJob> = jobs
            .values()
            .filter(|j| j.schedule_id == Some(schedule_id))
            .cloned()
            .collect();
        list.sort_by_key(|j| j.run_at_us);
        list
    };
    // Up to a minute for the first occurrence of the long variant, seconds otherwise.
    let first_wait = Duration::from_secs(if plan.label == "long" { 75 } else { 12 });
    let delivered_one = wait_for(first_wait, Duration::from_millis(50), || async {
        Ok(!lock(&ledger).deliveries.is_empty())
    })
    .await?;
    if !delivered_one {
        anyhow::bail!("the schedule's first occurrence was not delivered");
    }
    if plan.period_s == 1 {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Down. Instances exist only for occurrences that came while the server ran: the last one
    // before the stop is read afterwards, as the latest run_at not after the stop.
    let stop_at = server_now();
    server.stop().await?;
    tokio::time::sleep(plan.outage).await;
    if let Some(clock) = &clock {
        clock.set(clock.offset_s() + plan.shift_s).await?;
    }
    server.restart().await?;
    let restarted_at = server_now();
    let api = Api::new(server.addr());
    let back = wait_all_online(&api, &fleet.addresses(), Duration::from_secs(20)).await?;
    // The catch-up arrives at once; for the per-minute variants, wait for the next regular run.
    let settle = if plan.period_s == 60 {
        let next_regular = (restarted_at / 60_000_000 + 1) * 60_000_000;
        Duration::from_micros((next_regular - server_now()).max(0) as u64) + Duration::from_secs(4)
    } else {
        Duration::from_secs(3)
    };
    tokio::time::sleep(settle).await;
    let (_, deleted) = api.get(&format!("/api/schedules/{schedule_id}")).await?;
    let _ = api.delete(&format!("/api/schedules/{schedule_id}")).await;
    let jobs = api.all_jobs().await?;
    let all = instances(&jobs);
    let last_before = all
        .iter()
        .filter_map(|j| j.run_at_us)
        .filter(|at| *at <= stop_at)
        .max()
        .unwrap_or(0);

    let in_outage: Vec<&ServerJob> = all
        .iter()
        .filter(|j| {
            j.run_at_us
                .is_some_and(|at| at > last_before && at <= restarted_at)
        })
        .collect();
    let missed_occurrences = (restarted_at - last_before) / (plan.period_s * 1_000_000);
    report.check(
        "one catch-up run for the occurrences missed while the server was down, not one each",
        in_outage.len() == 1 && missed_occurrences >= 9,
        format!(
            "{} occurrences fell between the last run before the stop ({}) and the restart ({}); instances created for them: {} {:?}",
            missed_occurrences,
            rfc3339(last_before),
            rfc3339(restarted_at),
            in_outage.len(),
            in_outage.iter().map(|j| j.run_at_us.map(rfc3339)).collect::<Vec<_>>()
        ),
    );
    let catch_up_event = deleted["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["kind"] == "catch_up"))
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned());
    report.check(
        "the schedule records the catch-up",
        catch_up_event.is_some(),
        catch_up_event
            .clone()
            .unwrap_or_else(|| "no catch_up event".to_owned()),
    );

    // Every instance delivered once, never before its run_at (on the server's clock).
    let deliveries = lock(&ledger).deliveries.clone();
    let mut problems = Vec::new();
    for job in &all {
        let got: Vec<_> = deliveries.iter().filter(|d| d.job_id == job.id).collect();
        let early = got
            .iter()
            .any(|d| job.run_at_us.is_some_and(|at| d.received_us < at));
        let due = job
            .run_at_us
            .is_some_and(|at| at <= server_now() - 2_000_000);
        if got.len() > 1 || early || (due && got.is_empty() && job.status != "Cancelled") {
            problems.push(format!(
                "job {} run_at {:?} status {}: {} deliveries{}",
                job.id,
                job.run_at_us.map(rfc3339),
                job.status,
                got.len(),
                if early { ", early" } else { "" }
            ));
        }
    }
    report.check(
        "every instance runs once, never early",
        problems.is_empty() && back,
        if problems.is_empty() {
            format!("{} instances, each delivered once", all.len())
        } else {
            problems.join("; ")
        },
    );
    if plan.period_s == 60 {
        let regular_after = all
            .iter()
            .filter(|j| j.run_at_us.is_some_and(|at| at > restarted_at))
            .count();
        report.check(
            "the schedule continues with its next regular occurrence",
            regular_after == 1,
            format!("{regular_after} instances after the restart besides the catch-up"),
        );
    }
    report.figure(
        "instances",
        Value::Array(
            all.iter()
                .map(|j| {
                    json!({"id": j.id, "run_at": j.run_at_us.map(rfc3339), "status": j.status,
                    "deliveries": deliveries.iter().filter(|d| d.job_id == j.id).count()})
                })
                .collect(),
        ),
    );
    report.figure("missed_occurrences", missed_occurrences);
    report.figure("catch_up_event", catch_up_event);
    fleet.shutdown().await;
    server.stop().await?;
    Ok(())
}
