//! F3: a field robot (no acknowledgements) receives packages and never reports on them.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use rpa_robot::{Event, Robot, RobotConfig};
use rpa_testkit::HttpClient;
use serde_json::json;

use super::Env;
use crate::api::{Api, Target, trigger};
use crate::clock::{floor_ms, now_us};
use crate::report::FaultReport;
use crate::server::{self, Server};

#[derive(Debug, Clone, Args)]
pub struct F3Args {
    /// The server's --ack-timeout (it must not apply to field robots).
    #[arg(long, default_value = "1s")]
    pub ack_timeout: String,
    /// Jobs sent to the silent robot.
    #[arg(long, default_value_t = 3)]
    pub jobs: usize,
    /// How long to watch for resends after the packages arrived.
    #[arg(long, default_value_t = 6)]
    pub watch_secs: u64,
}

/// Packages received within `limit`, at most `enough` of them: (job id, package name).
async fn packages(robot: &mut Robot, limit: Duration, enough: usize) -> Vec<(i64, String)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return got;
        }
        match robot.next_event_timeout(left).await {
            Ok(Some(Event::Package { job_id, package })) => {
                let name = package
                    .get("package_name")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                got.push((job_id, name));
                if got.len() >= enough {
                    return got;
                }
            }
            Ok(Some(Event::Closed { .. })) | Ok(None) | Err(_) => return got,
            Ok(Some(_)) => {}
        }
    }
}

pub async fn run(env: &Env, args: &F3Args, report: &mut FaultReport) -> Result<()> {
    report.note(format!(
        "server with --ack-timeout {}; a field robot (no protocol 2) receives {} packages and \
         stays silent for {} s; then, as a control that resends are visible, it declines one",
        args.ack_timeout, args.jobs, args.watch_secs
    ));
    let dir = env.work_dir("f3")?;
    let spec = server::spec(&env.server_bin, dir.path()).flag("--ack-timeout", &args.ack_timeout);
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let target = Target::robot("FAULT-F3", "02FA000000F3");
    let mut config = RobotConfig::new(server.ws_url(), &target.name, &target.address);
    config.extended = false;
    let mut robot = Robot::connect(config).await?;
    if !api
        .wait_online(&target.address, true, Duration::from_secs(10))
        .await?
    {
        anyhow::bail!("the robot did not come online");
    }
    let mut http = HttpClient::new(server.addr());
    let mut ids = Vec::new();
    for n in 0..args.jobs {
        let due = floor_ms(now_us() + 300_000);
        let record = trigger(&mut http, &format!("f3-{n}"), &target, due, 0).await;
        match record.job_id() {
            Some(id) => ids.push(id),
            None => anyhow::bail!("trigger refused: {:?}", record.answer),
        }
    }
    let first = packages(&mut robot, Duration::from_secs(3), ids.len()).await;
    let later = packages(&mut robot, Duration::from_secs(args.watch_secs), usize::MAX).await;
    let mut views = Vec::new();
    for id in &ids {
        views.push(api.job(*id).await?.unwrap_or_default());
    }
    let all_received = ids.iter().all(|id| first.iter().any(|(got, _)| got == id));
    report.check(
        "every package reached the silent robot once",
        all_received && first.len() == ids.len(),
        format!("{} jobs, {} packages received", ids.len(), first.len()),
    );
    let statuses: Vec<String> = views
        .iter()
        .map(|v| format!("{}/{}", v["status"].as_str().unwrap_or("?"), v["attempts"]))
        .collect();
    report.check(
        "the jobs stay Executed with one sending; nothing is resent without a decline",
        later.is_empty()
            && views
                .iter()
                .all(|v| v["status"] == "Executed" && v["attempts"].as_i64() == Some(1)),
        format!(
            "after {} s (the ack timeout is {}): status/attempts {:?}, {} more packages received",
            args.watch_secs,
            args.ack_timeout,
            statuses,
            later.len()
        ),
    );

    // Control: a decline is answered with a resend, so the watch above would have seen one.
    let declined = first.first().cloned();
    let mut control = Vec::new();
    if let Some((_, name)) = &declined {
        robot.decline(name).await?;
        control = packages(&mut robot, Duration::from_secs(5), 1).await;
    }
    let control_ok = declined
        .as_ref()
        .is_some_and(|(id, _)| control.iter().any(|(got, _)| got == id));
    let control_view = match &declined {
        Some((id, _)) => api.job(*id).await?.unwrap_or_default(),
        None => serde_json::Value::Null,
    };
    report.check(
        "control: a decline is resent (a resend is visible to this check)",
        control_ok && control_view["attempts"].as_i64() == Some(2),
        format!(
            "after the decline: {} packages, job attempts {}",
            control.len(),
            control_view["attempts"]
        ),
    );
    report.figure(
        "jobs",
        json!({"ids": ids, "status_attempts": statuses, "packages_first": first.len(),
               "packages_during_watch": later.len(), "control_resend": control_ok}),
    );
    let _ = robot.close().await;
    server.stop().await?;
    Ok(())
}
