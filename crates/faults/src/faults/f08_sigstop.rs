//! F8: a robot goes silent without closing: its process (the rpa-robot CLI) gets SIGSTOP, so
//! its socket stays open (no FIN) and nothing answers the server's pings.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use rpa_testkit::HttpClient;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{Env, check_ledger, report_verdict, wait_all_due};
use crate::api::{Api, Target, trigger};
use crate::checker::{Delivery, FaultMark};
use crate::clock::{floor_ms, now_us};
use crate::fleet::{SharedLedger, lock};
use crate::report::{FaultReport, ms};
use crate::server::{self, Server, send_signal};

#[derive(Debug, Clone, Args)]
pub struct F8Args {
    /// The server's --ping-interval, seconds.
    #[arg(long, default_value_t = 1)]
    pub ping_interval_secs: u64,
    /// Allowance on top of 3 ping intervals for the offline check (timer and poll granularity,
    /// the database write).
    #[arg(long, default_value_t = 500)]
    pub slack_ms: u64,
    /// Jobs triggered for the silent robot: half due in the silent window (before the server
    /// declares it offline), half after.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
}

/// Runs the rpa-robot CLI; every `package` line it prints goes into the ledger.
async fn spawn_robot(
    env: &Env,
    url: &str,
    robot: &Target,
    ledger: &SharedLedger,
    transcript: std::path::PathBuf,
) -> Result<Child> {
    let mut child = Command::new(&env.robot_bin)
        .args(["--url", url, "--name", &robot.name, "--address", &robot.address])
        .args(["--field", "--reconnect", "--user", "4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            anyhow::Error::msg(format!(
                "cannot start the robot CLI {}: {e} (build it: cargo build --release -p rpa-robot, or pass --robot-bin)",
                env.robot_bin.display()
            ))
        })?;
    let Some(stdout) = child.stdout.take() else {
        anyhow::bail!("the robot's stdout is not captured");
    };
    let ledger = Arc::clone(ledger);
    let address = robot.address.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut transcript = tokio::fs::File::create(transcript).await.ok();
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(file) = transcript.as_mut() {
                let _ = file
                    .write_all(format!("{} {line}\n", crate::clock::rfc3339(now_us())).as_bytes())
                    .await;
            }
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["event"] == "package"
                && let (Some(job_id), Some(package)) =
                    (event["job_id"].as_i64(), event["package"].as_object())
            {
                let delivery = Delivery::from_package(&address, job_id, package, now_us());
                lock(&ledger).deliveries.push(delivery);
            }
        }
    });
    Ok(child)
}

pub async fn run(env: &Env, args: &F8Args, report: &mut FaultReport) -> Result<()> {
    let interval = Duration::from_secs(args.ping_interval_secs.max(1));
    let limit = interval * 3 + Duration::from_millis(args.slack_ms);
    report.note(format!(
        "server with --ping-interval {}s; the rpa-robot CLI ({}) runs as a field robot with \
         --reconnect and gets SIGSTOP, later SIGCONT; the offline check allows {} ms on top of 3 \
         ping intervals",
        interval.as_secs(),
        env.robot_bin.display(),
        args.slack_ms
    ));
    let dir = env.work_dir("f8")?;
    let spec = server::spec(&env.server_bin, dir.path())
        .flag("--ping-interval", format!("{}s", interval.as_secs()));
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let ledger = SharedLedger::default();
    let robot = Target::robot("FAULT-F8", "02FA000000F8");
    let transcript = dir.path().join("robot-stdout.log");
    let mut child = spawn_robot(env, &server.ws_url(), &robot, &ledger, transcript).await?;
    let Some(pid) = child.id() else {
        anyhow::bail!("the robot exited at once");
    };
    if !api
        .wait_online(&robot.address, true, Duration::from_secs(10))
        .await?
    {
        anyhow::bail!("the robot did not come online");
    }
    let mut http = HttpClient::new(server.addr());
    let control = trigger(
        &mut http,
        "f8-control",
        &robot,
        floor_ms(now_us() + 300_000),
        0,
    )
    .await;
    lock(&ledger).triggers.push(control);
    let control_ok = wait_all_due(&ledger, 0, Duration::from_secs(5)).await == 0;

    let stopped_us = now_us();
    let stopped = Instant::now();
    send_signal(pid, "STOP")?;
    // Jobs due while the server still takes the robot for alive (the silent window).
    let mut silent_window = Vec::new();
    for n in 0..args.jobs / 2 {
        let due = floor_ms(now_us() + 500_000 + 1_000_000 * n as i64);
        let record = trigger(&mut http, &format!("f8-silent-window-{n}"), &robot, due, 0).await;
        silent_window.extend(record.job_id());
        lock(&ledger).triggers.push(record);
    }
    let offline = api
        .wait_online(&robot.address, false, Duration::from_secs(30))
        .await?;
    let offline_after = stopped.elapsed();
    // Jobs due after the server declared it offline: they must wait for it.
    let mut after_verdict = Vec::new();
    for n in 0..args.jobs - args.jobs / 2 {
        let due = floor_ms(now_us() + 300_000 + 500_000 * n as i64);
        let record = trigger(&mut http, &format!("f8-offline-{n}"), &robot, due, 0).await;
        after_verdict.extend(record.job_id());
        lock(&ledger).triggers.push(record);
    }
    let last_due = lock(&ledger)
        .triggers
        .iter()
        .map(|t| t.due_us)
        .max()
        .unwrap_or(0);
    let wait = (last_due - now_us()).max(0) as u64 + 1_000_000;
    tokio::time::sleep(Duration::from_micros(wait)).await;
    let mut status_while_offline = std::collections::BTreeMap::<i64, String>::new();
    for id in silent_window.iter().chain(&after_verdict) {
        let view = api.job(*id).await?.unwrap_or_default();
        status_while_offline.insert(*id, view["status"].as_str().unwrap_or("?").to_owned());
    }
    let received_while_stopped = lock(&ledger)
        .deliveries
        .iter()
        .filter(|d| d.received_us > stopped_us && d.key.as_deref() != Some("f8-control"))
        .count();

    send_signal(pid, "CONT")?;
    let continued = Instant::now();
    let back = api
        .wait_online(&robot.address, true, Duration::from_secs(20))
        .await?;
    let back_after = continued.elapsed();
    let missing = wait_all_due(&ledger, 0, Duration::from_secs(10)).await;
    let delivered_after = continued.elapsed();
    lock(&ledger).faults.push(FaultMark {
        label: "SIGSTOP".to_owned(),
        start_us: stopped_us,
        end_us: now_us(),
    });
    let verdict = check_ledger(&api, &ledger, 0, Duration::from_secs(1)).await?;
    let received: std::collections::HashSet<i64> =
        lock(&ledger).deliveries.iter().map(|d| d.job_id).collect();
    let final_status =
        |ids: &[i64], jobs: &std::collections::HashMap<i64, crate::checker::ServerJob>| {
            ids.iter()
                .map(|id| {
                    let status = jobs.get(id).map_or("?", |j| j.status.as_str());
                    format!(
                        "{id}:{status}{}",
                        if received.contains(id) {
                            "+received"
                        } else {
                            ""
                        }
                    )
                })
                .collect::<Vec<_>>()
        };
    let jobs = api.all_jobs().await?;

    report.check(
        "control: the robot receives a job before the fault",
        control_ok,
        "",
    );
    report.check(
        "marked offline within 3 ping intervals",
        offline && offline_after <= limit,
        format!(
            "offline {} ms after SIGSTOP (limit {} ms = 3 x {} s + {} ms)",
            ms(offline_after),
            ms(limit),
            interval.as_secs(),
            args.slack_ms
        ),
    );
    let waited = after_verdict
        .iter()
        .all(|id| status_while_offline.get(id).map(String::as_str) == Some("Pending"));
    report.check(
        "jobs due while it is offline wait for it (Pending) and reach it after SIGCONT",
        !after_verdict.is_empty()
            && waited
            && received_while_stopped == 0
            && after_verdict.iter().all(|id| received.contains(id)),
        format!(
            "while offline: {:?}; after SIGCONT: {:?}",
            after_verdict
                .iter()
                .map(|id| format!(
                    "{id}:{}",
                    status_while_offline.get(id).map_or("?", String::as_str)
                ))
                .collect::<Vec<_>>(),
            final_status(&after_verdict, &jobs)
        ),
    );
    report.check(
        "jobs due in the silent window (before the offline verdict) are not lost: they reach it after SIGCONT",
        silent_window.iter().all(|id| received.contains(id)),
        format!(
            "while offline: {:?}; after SIGCONT: {:?} (Executed = written into the silent socket)",
            silent_window
                .iter()
                .map(|id| format!("{id}:{}", status_while_offline.get(id).map_or("?", String::as_str)))
                .collect::<Vec<_>>(),
            final_status(&silent_window, &jobs)
        ),
    );
    report.check(
        "after SIGCONT it reconnects",
        back,
        format!(
            "online again {} ms after SIGCONT; {missing} due jobs not received {} ms after it",
            ms(back_after),
            ms(delivered_after)
        ),
    );
    report_verdict(report, &verdict);
    report.figure(
        "timings_ms",
        json!({"offline_after_stop": ms(offline_after), "limit": ms(limit),
               "online_after_cont": ms(back_after), "delivered_after_cont": ms(delivered_after)}),
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    server.stop().await?;
    Ok(())
}
