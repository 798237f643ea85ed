#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Issue 4 end to end: recurring triggers, deletion, overlap, catch-up after downtime.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Server, Ws, eventually, http_raw, next_text, send};
use serde_json::{Value, json};

const ROBOT: &str = "001AFFDB45C2";

fn cron(expression: &str) -> Value {
    json!({
        "Package": {"package_name": "nightly-report", "path": "cloudinary/studioPackages/report.std"},
        "Robot": {"robot_name": "R", "robot_address": ROBOT},
        "Schedule": {"cron": expression, "timezone": "Europe/Berlin"},
    })
}

async fn next_job_id(ws: &mut Ws, limit: Duration) -> Option<i64> {
    let text = next_text(ws, limit).await?;
    let frame: Value = serde_json::from_str(&text).unwrap();
    let package: Value = serde_json::from_str(frame["value"].as_str().unwrap()).unwrap();
    Some(package["job_id"].as_i64().unwrap())
}

async fn report(ws: &mut Ws, id: i64) {
    send(
        ws,
        &json!({"_event": "client robot message", "value": {"job_id": id, "status": "success"}}),
    )
    .await;
}

#[tokio::test]
async fn a_two_second_schedule_delivers_distinct_instances_until_deleted() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", ROBOT).await;
    let body = cron("*/2 * * * * *").to_string();
    let (status, headers, text) =
        http_raw(server.addr, "POST", "/api/jobs", Some(&body), &[]).await;
    assert_eq!(status, 201, "{text}");
    let schedule: Value = serde_json::from_str(&text).unwrap();
    let id = schedule["id"].as_i64().unwrap();
    assert_eq!(headers["location"], format!("/api/schedules/{id}").as_str());
    assert_eq!(schedule["active"], true);
    assert_eq!(schedule["cron"], "*/2 * * * * *");
    assert_eq!(schedule["timezone"], "Europe/Berlin");
    let upcoming = schedule["next_occurrences"].as_array().unwrap();
    assert_eq!(upcoming.len(), 5);

    let mut seen = HashSet::new();
    for _ in 0..3 {
        let job = next_job_id(&mut ws, Duration::from_secs(5))
            .await
            .expect("an instance");
        assert!(seen.insert(job), "instance {job} delivered twice");
        report(&mut ws, job).await;
    }
    let (status, detail) = server.get(&format!("/api/schedules/{id}")).await;
    assert_eq!(status, 200);
    let instances = detail["instances"].as_array().unwrap();
    assert!(instances.len() >= 3);
    assert!(instances.iter().all(|j| j["schedule_id"] == id));

    let (status, _, deleted) = http_raw(
        server.addr,
        "DELETE",
        &format!("/api/schedules/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let deleted: Value = serde_json::from_str(&deleted).unwrap();
    assert_eq!(deleted["active"], false);
    // Drain whatever was already on its way, then nothing more comes.
    while next_job_id(&mut ws, Duration::from_millis(300))
        .await
        .is_some()
    {}
    assert_eq!(next_job_id(&mut ws, Duration::from_secs(3)).await, None);
    let (_, after) = server.get(&format!("/api/schedules/{id}")).await;
    assert_eq!(after["active"], false, "still readable after deletion");
    let (_, list) = server.get("/api/schedules?active=false").await;
    assert_eq!(list["items"][0]["id"], id);
}

#[tokio::test]
async fn while_an_instance_is_pending_the_next_occurrences_are_skipped() {
    let server = Server::start(&[]);
    let ws = server.robot("R", ROBOT).await;
    drop(ws);
    server.wait_online(ROBOT, false).await;
    let (status, schedule) = server.post("/api/jobs", &cron("* * * * * *")).await;
    assert_eq!(status, 201);
    let id = schedule["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (_, detail) = server.get(&format!("/api/schedules/{id}")).await;
    let instances = detail["instances"].as_array().unwrap();
    assert_eq!(
        instances.len(),
        1,
        "one instance waits for the robot: {detail}"
    );
    assert_eq!(instances[0]["status"], "Pending");
    let skipped = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "skipped")
        .count();
    assert!(skipped >= 2, "{detail}");
    assert!(
        detail["events"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("still pending")
    );
}

#[tokio::test]
async fn a_schedule_whose_last_occurrence_is_skipped_still_ends() {
    let server = Server::start(&[]);
    let ws = server.robot("R", ROBOT).await;
    drop(ws);
    server.wait_online(ROBOT, false).await;
    let end = (chrono::Utc::now() + chrono::TimeDelta::seconds(2)).to_rfc3339();
    let mut body = cron("* * * * * *");
    body["Schedule"]["end"] = json!(end);
    let (status, schedule) = server.post("/api/jobs", &body).await;
    assert_eq!(status, 201, "{schedule}");
    let id = schedule["id"].as_i64().unwrap();
    let detail = eventually(Duration::from_secs(6), || async {
        let (_, detail) = server.get(&format!("/api/schedules/{id}")).await;
        (detail["active"] == false).then_some(detail)
    })
    .await;
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"skipped"), "{detail}");
    assert_eq!(kinds[0], "ended", "newest first: {detail}");
    let (_, events) = server
        .get(&format!(
            "/api/events?subject=schedules/{id}&type=schedule.ended"
        ))
        .await;
    assert_eq!(events["items"].as_array().unwrap().len(), 1, "{events}");
}

#[tokio::test]
async fn cron_expressions_that_never_fire_or_fire_too_often_are_refused() {
    let server = Server::start(&["--min-schedule-interval", "1m"]);
    let _ws = server.robot("R", ROBOT).await;
    for expression in [
        "0 0 30 2 *",
        "* * * * * *",
        "not a cron",
        "0 0 * * 8",
        "0 0 L * *",
    ] {
        let (status, problem) = server.post("/api/jobs", &cron(expression)).await;
        assert_eq!(status, 422, "{expression}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "Schedule.cron", "{problem}");
    }
    let (status, _) = server.post("/api/jobs", &cron("*/5 * * * *")).await;
    assert_eq!(status, 201);
    assert_eq!(server.get("/api/schedules/999").await.0, 404);
}

#[tokio::test]
async fn after_downtime_a_schedule_catches_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &[]);
    let mut ws = server.robot("R", ROBOT).await;
    let (_, schedule) = server.post("/api/jobs", &cron("* * * * * *")).await;
    let id = schedule["id"].as_i64().unwrap();
    let first = next_job_id(&mut ws, Duration::from_secs(5)).await.unwrap();
    report(&mut ws, first).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(ws);
    server.kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let server = Server::start_in(dir.path(), &[]);
    let mut ws = server.robot("R", ROBOT).await;
    let caught_up = next_job_id(&mut ws, Duration::from_secs(5)).await.unwrap();
    let (_, job) = server.get(&format!("/api/jobs/{caught_up}")).await;
    let created = job["events"][0]["reason"].as_str().unwrap();
    assert!(created.contains("catch-up"), "{created}");
    let (_, detail) = server.get(&format!("/api/schedules/{id}")).await;
    let catch_ups = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "catch_up")
        .count();
    assert_eq!(
        catch_ups, 1,
        "one catch-up run, not one per missed second: {detail}"
    );
}
