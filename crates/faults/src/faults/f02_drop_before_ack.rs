//! F2: an extended robot drops its TCP connection after the package was written, before
//! acknowledging it. A proxy between robot and server is cut (reset) once the robot holds the
//! package.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use rpa_robot::{Event, Robot, RobotConfig};
use rpa_testkit::HttpClient;
use serde_json::{Value, json};

use super::Env;
use crate::api::{Api, Target, trigger};
use crate::clock::{floor_ms, now_us};
use crate::proxy::Proxy;
use crate::report::{FaultReport, ms};
use crate::server::{self, Server};

#[derive(Debug, Clone, Args)]
pub struct F2Args {
    /// The server's --ack-timeout.
    #[arg(long, default_value = "2s")]
    pub ack_timeout: String,
    /// The server's --max-delivery-attempts.
    #[arg(long, default_value_t = 3)]
    pub max_delivery_attempts: u32,
}

fn seconds(text: &str) -> f64 {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    number.trim().parse::<f64>().unwrap_or(30.0) * scale
}

/// A robot behind the proxy that never acknowledges on its own.
async fn connect(proxy: &Proxy, robot: &Target) -> Result<Robot> {
    let mut config = RobotConfig::new(proxy.ws_url(), &robot.name, &robot.address);
    config.auto_ack = false;
    Ok(Robot::connect(config).await?)
}

/// The next package within `limit`, skipping other events; `None` on silence or a close.
async fn next_package(robot: &mut Robot, limit: Duration) -> Option<(i64, Instant)> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match robot.next_event_timeout(left).await {
            Ok(Some(Event::Package { job_id, .. })) => return Some((job_id, Instant::now())),
            Ok(Some(Event::Closed { .. })) | Ok(None) | Err(_) => return None,
            Ok(Some(_)) => {}
        }
    }
}

async fn job(api: &Api, id: i64) -> Result<Value> {
    Ok(api.job(id).await?.unwrap_or(Value::Null))
}

pub async fn run(env: &Env, args: &F2Args, report: &mut FaultReport) -> Result<()> {
    let ack_timeout = seconds(&args.ack_timeout);
    let max = args.max_delivery_attempts;
    report.note(format!(
        "server with --ack-timeout {} --max-delivery-attempts {max}; an extended robot (protocol 2, \
         auto-ack off) connects through an in-process TCP proxy, which is reset once the robot \
         holds a package and before it acknowledges",
        args.ack_timeout
    ));
    let dir = env.work_dir("f2")?;
    let spec = server::spec(&env.server_bin, dir.path())
        .flag("--ack-timeout", &args.ack_timeout)
        .flag("--max-delivery-attempts", max);
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let proxy = Proxy::start(server.addr(), None).await?;
    let robot = Target::robot("FAULT-F2", "02FA000000F2");
    let mut http = HttpClient::new(server.addr());
    // A generous wait for a resend: back-off and the acknowledgement timeout included.
    let resend_wait = Duration::from_secs_f64(ack_timeout * 1.5 + 2.0);

    // A: cut after the first sending, reconnect, acknowledge the resend.
    let mut client = connect(&proxy, &robot).await?;
    let due = floor_ms(now_us() + 300_000);
    let a = trigger(&mut http, "f2-a", &robot, due, 0).await;
    let Some(a_id) = a.job_id() else {
        anyhow::bail!("trigger refused: {:?}", a.answer);
    };
    let first = next_package(&mut client, Duration::from_secs(10)).await;
    proxy.cut();
    drop(client);
    let cut_at = Instant::now();
    let mut client = connect(&proxy, &robot).await?;
    let reconnected = Instant::now();
    let second = next_package(&mut client, resend_wait).await;
    if let Some((id, _)) = second {
        client.ack(id).await?;
        client.report(id, true, None).await?;
    }
    // Nothing more may come for it.
    let extra = next_package(&mut client, Duration::from_secs_f64(ack_timeout + 1.5)).await;
    let a_view = job(&api, a_id).await?;
    let a_attempts = a_view["attempts"].as_i64().unwrap_or(-1);
    let redelivery_ms = second.map(|(_, at)| ms(at.saturating_duration_since(reconnected)));
    report.check(
        "A: a package unacknowledged when the connection dropped is redelivered on reconnection",
        first.is_some_and(|(id, _)| id == a_id) && second.is_some_and(|(id, _)| id == a_id),
        format!(
            "first sending {}, redelivered {} ms after the robot reconnected ({} ms after the cut)",
            if first.is_some() {
                "received"
            } else {
                "NOT received"
            },
            redelivery_ms.map_or("never".to_owned(), |v| v.to_string()),
            second.map_or("-".to_owned(), |(_, at)| ms(
                at.saturating_duration_since(cut_at)
            )
            .to_string()),
        ),
    );
    report.check(
        "A: acknowledged and reported after the resend, the job is done: 2 sendings, no more",
        a_attempts == 2 && a_view["status"] == "Succeeded" && extra.is_none(),
        format!(
            "status {}, attempts {a_attempts}, further sendings: {}",
            a_view["status"],
            if extra.is_some() { "yes" } else { "none" }
        ),
    );

    // B: never acknowledged, the connection cut after every sending.
    let due = floor_ms(now_us() + 300_000);
    let b = trigger(&mut http, "f2-b", &robot, due, 0).await;
    let Some(b_id) = b.job_id() else {
        anyhow::bail!("trigger refused: {:?}", b.answer);
    };
    let mut b_sendings = 0;
    loop {
        match next_package(&mut client, resend_wait).await {
            Some((id, _)) if id == b_id => b_sendings += 1,
            Some(_) => continue,
            None => break,
        }
        proxy.cut();
        client = connect(&proxy, &robot).await?;
        if b_sendings > max + 2 {
            break;
        }
    }
    let b_view = job(&api, b_id).await?;
    report.check(
        "B: cut before every acknowledgement: at most --max-delivery-attempts sendings, then Failed with a reason",
        b_sendings >= 2
            && b_sendings <= max
            && b_view["attempts"].as_i64() == Some(i64::from(max))
            && b_view["status"] == "Failed"
            && b_view["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        format!(
            "{b_sendings} sendings received (max {max}); job status {}, attempts {}, last_error {}",
            b_view["status"], b_view["attempts"], b_view["last_error"]
        ),
    );

    // C: never acknowledged, the connection stays: resent after each acknowledgement timeout.
    let due = floor_ms(now_us() + 300_000);
    let c = trigger(&mut http, "f2-c", &robot, due, 0).await;
    let Some(c_id) = c.job_id() else {
        anyhow::bail!("trigger refused: {:?}", c.answer);
    };
    let mut c_times = Vec::new();
    while let Some((id, at)) = next_package(&mut client, resend_wait).await {
        if id == c_id {
            c_times.push(at);
        }
        if c_times.len() > max as usize + 2 {
            break;
        }
    }
    let c_view = job(&api, c_id).await?;
    let gaps: Vec<f64> = c_times
        .windows(2)
        .map(|w| ms(w[1].saturating_duration_since(w[0])))
        .collect();
    report.check(
        "C: never acknowledged on a live connection: resent after the acknowledgement timeout, at most --max-delivery-attempts sendings",
        c_times.len() == max as usize
            && gaps.iter().all(|gap| *gap >= ack_timeout * 1000.0 * 0.9)
            && c_view["status"] == "Failed"
            && c_view["attempts"].as_i64() == Some(i64::from(max)),
        format!(
            "{} sendings, {:?} ms apart; job status {}, attempts {}, last_error {}",
            c_times.len(),
            gaps,
            c_view["status"],
            c_view["attempts"],
            c_view["last_error"]
        ),
    );
    report.figure(
        "jobs",
        json!({
            "a": {"attempts": a_attempts, "status": a_view["status"], "redelivery_after_reconnect_ms": redelivery_ms},
            "b": {"sendings_received": b_sendings, "attempts": b_view["attempts"], "status": b_view["status"], "last_error": b_view["last_error"]},
            "c": {"sendings_received": c_times.len(), "gaps_ms": gaps, "attempts": c_view["attempts"], "status": c_view["status"], "last_error": c_view["last_error"]},
        }),
    );
    let _ = client.close().await;
    server.stop().await?;
    Ok(())
}
