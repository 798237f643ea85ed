#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Issue 15, the operator controls, end to end: running a failed or cancelled job again,
//! pausing and resuming a schedule, a schedule's occurrences in its own zone, and a robot
//! recorded before its first connection.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Server, Ws, eventually, http, http_raw, next_package, send};
use serde_json::{Value, json};

const ROBOT: &str = "001AFFDB45C2";

fn trigger(address: &str, schedule: Value) -> Value {
    json!({
        "Package": {"package_name": "package-x74s-eg", "path": "cloudinary/studioPackages/pkg1-x74s.std"},
        "Robot": {"robot_name": "R", "robot_address": address},
        "Schedule": schedule,
    })
}

fn now_schedule() -> Value {
    json!({"at": Utc::now().to_rfc3339()})
}

async fn create(server: &Server, body: &Value) -> Value {
    let (status, created) = server.post("/api/jobs", body).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn report(ws: &mut Ws, id: i64, status: &str) {
    let value = json!({"job_id": id, "status": status, "message": "file not found"});
    send(
        ws,
        &json!({"_event": "client robot message", "value": value}),
    )
    .await;
}

async fn wait_status(server: &Server, id: i64, status: &str) -> Value {
    eventually(Duration::from_secs(5), || async {
        let (_, job) = server.get(&format!("/api/jobs/{id}")).await;
        (job["status"] == status).then_some(job)
    })
    .await
}

async fn retry(server: &Server, id: i64, key: Option<&str>) -> (u16, String, String) {
    let headers: Vec<(&str, &str)> = key
        .map(|k| vec![("idempotency-key", k)])
        .unwrap_or_default();
    let (status, headers, text) = http_raw(
        server.addr,
        "POST",
        &format!("/api/jobs/{id}/retry"),
        None,
        &headers,
    )
    .await;
    let location = headers
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, text)
}

async fn events(server: &Server, query: &str) -> Vec<Value> {
    let (status, page) = server.get(&format!("/api/events?{query}")).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_failed_job_runs_again_as_a_new_job_delivered_to_its_robot() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", ROBOT).await;
    let first = create(&server, &trigger(ROBOT, now_schedule())).await;
    assert_eq!(first["retry_of"], Value::Null, "every job shows retry_of");
    let id = first["id"].as_i64().unwrap();
    let (sent, _, _) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(sent, id);
    wait_status(&server, id, "Executed").await;
    report(&mut ws, id, "failure").await;
    let failed = wait_status(&server, id, "Failed").await;

    let (status, location, text) = retry(&server, id, None).await;
    assert_eq!(status, 201, "{text}");
    let again: Value = serde_json::from_str(&text).unwrap();
    let new_id = again["id"].as_i64().unwrap();
    assert_ne!(new_id, id);
    assert_eq!(location, format!("/api/jobs/{new_id}"));
    assert_eq!(again["retry_of"], id);
    assert_eq!(again["schedule_id"], Value::Null);
    assert_eq!(again["status"], "Pending");
    assert_eq!(again["package"], first["package"]);
    assert_eq!(again["robot_address"], ROBOT);
    assert_eq!(again["robot_name"], "R");
    assert_eq!(again["attempts"], 0);
    assert!((Utc::now() - time(&again["run_at"])).num_seconds().abs() < 5);

    // Delivered to its robot, which reports it.
    let (sent, package, _) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(sent, new_id);
    assert_eq!(package["package_name"], "package-x74s-eg");
    wait_status(&server, new_id, "Executed").await;
    report(&mut ws, new_id, "success").await;
    wait_status(&server, new_id, "Succeeded").await;

    // The old job is as it was, events and all.
    let (_, old) = server.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(old["status"], "Failed");
    assert_eq!(old["updated_at"], failed["updated_at"]);
    assert_eq!(old["events"], failed["events"]);
    assert_eq!(old["retry_of"], Value::Null);

    // Its own package file.
    let file = server
        .dir
        .join(format!("packages/package-x74s-eg_{new_id}"));
    eventually(Duration::from_secs(5), || async {
        file.exists().then_some(())
    })
    .await;
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["JobID"], new_id);

    // job.created for the new job, saying what it retries.
    let created = events(&server, &format!("type=job.created&subject=jobs/{new_id}")).await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(
        created[0]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("retry of job {id}")),
        "{}",
        created[0]
    );
    assert_eq!(created[0]["data"]["job"]["retry_of"], id);

    // Only a Failed or Cancelled job: a Succeeded one is 409; an unknown one 404.
    let (status, _, text) = retry(&server, new_id, None).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("Succeeded"), "{text}");
    let (status, _, text) = retry(&server, 999_999, None).await;
    assert_eq!(status, 404, "{text}");
    // The failed one can be retried again: another new job.
    let (status, _, text) = retry(&server, id, None).await;
    assert_eq!(status, 201, "{text}");
    let third: Value = serde_json::from_str(&text).unwrap();
    assert!(third["id"].as_i64().unwrap() > new_id);
}

#[tokio::test]
async fn a_cancelled_job_is_retried_once_per_idempotency_key() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    let far = create(
        &server,
        &trigger(ROBOT, json!({"at": "2099-07-15T09:00:00Z"})),
    )
    .await;
    let id = far["id"].as_i64().unwrap();
    // Pending: 409.
    let (status, _, text) = retry(&server, id, None).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("Pending"), "{text}");
    let (status, _) = server
        .post(&format!("/api/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);

    let (status, location, text) = retry(&server, id, Some("retry-1")).await;
    assert_eq!(status, 201, "{text}");
    let again: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(again["retry_of"], id);
    // Due now, not at the old job's time.
    assert!((Utc::now() - time(&again["run_at"])).num_seconds().abs() < 5);
    // The same key: the same answer, no second job.
    let (status, replayed_location, replayed) = retry(&server, id, Some("retry-1")).await;
    assert_eq!(status, 201);
    assert_eq!(replayed, text);
    assert_eq!(replayed_location, location);
    let (_, page) = server.get("/api/jobs?limit=50").await;
    let retries = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["retry_of"] == id)
        .count();
    assert_eq!(retries, 1, "{page}");
    // The same key for another request: 409.
    let other = create(
        &server,
        &trigger(ROBOT, json!({"at": "2099-07-15T09:00:00Z"})),
    )
    .await;
    let other = other["id"].as_i64().unwrap();
    server
        .post(&format!("/api/jobs/{other}/cancel"), &json!({}))
        .await;
    let (status, _, text) = retry(&server, other, Some("retry-1")).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("idempotency_key_reused"), "{text}");
    // The old job is still Cancelled.
    let (_, old) = server.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(old["status"], "Cancelled");
}

/// Instances of the schedule `id` created so far (their ids).
async fn instances(server: &Server, id: i64) -> Vec<(i64, DateTime<Utc>)> {
    let (_, detail) = server.get(&format!("/api/schedules/{id}")).await;
    detail["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| (job["id"].as_i64().unwrap(), time(&job["run_at"])))
        .collect()
}

/// Reports every package that arrives within `limit`, returning their job ids.
async fn drain(ws: &mut Ws, limit: Duration) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return seen;
        }
        if let Some((id, _, _)) = next_package(ws, left).await {
            report(ws, id, "success").await;
            seen.push(id);
        }
    }
}

#[tokio::test]
async fn a_paused_schedule_creates_nothing_and_resumes_without_catching_up() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", ROBOT).await;
    let body = json!({
        "Package": {"package_name": "nightly-report", "path": "cloudinary/studioPackages/report.std"},
        "Robot": {"robot_name": "R", "robot_address": ROBOT},
        "Schedule": {"cron": "*/2 * * * * *", "timezone": "Europe/Berlin"},
    });
    let created = create(&server, &body).await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["paused"], false);
    // It runs.
    let (first, _, _) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    report(&mut ws, first, "success").await;

    let (status, paused) = server
        .post(&format!("/api/schedules/{id}/pause"), &json!({}))
        .await;
    assert_eq!(status, 200, "{paused}");
    let paused_at = Utc::now();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["active"], true);
    assert_eq!(paused["next_run_at"], Value::Null);
    // Its occurrences as if resumed now.
    let upcoming = paused["next_occurrences"].as_array().unwrap();
    assert_eq!(upcoming.len(), 5);
    assert!(time(&upcoming[0]) > paused_at - chrono::TimeDelta::seconds(1));
    // Pausing again: a no-op 200.
    let (status, again) = server
        .post(&format!("/api/schedules/{id}/pause"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["paused"], true);

    // Anything already on its way arrives at once; after that, nothing for three occurrences.
    drain(&mut ws, Duration::from_millis(500)).await;
    let before = instances(&server, id).await;
    let during = drain(&mut ws, Duration::from_secs(6)).await;
    assert!(during.is_empty(), "instances while paused: {during:?}");
    assert_eq!(instances(&server, id).await, before);

    let (status, resumed) = server
        .post(&format!("/api/schedules/{id}/resume"), &json!({}))
        .await;
    let resumed_at = Utc::now();
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["paused"], false);
    let next = time(&resumed["next_run_at"]);
    assert!(
        next > resumed_at - chrono::TimeDelta::seconds(1),
        "{resumed}"
    );
    assert!(
        next <= resumed_at + chrono::TimeDelta::seconds(3),
        "{resumed}"
    );
    // Resuming a running schedule: a no-op 200.
    let (status, again) = server
        .post(&format!("/api/schedules/{id}/resume"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["next_run_at"], resumed["next_run_at"]);

    // It runs again, from the next occurrence on: no catch-up of the paused time.
    let (after, _, _) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    report(&mut ws, after, "success").await;
    let runs = instances(&server, id).await;
    let (_, run_at) = runs.iter().find(|(job, _)| *job == after).unwrap();
    assert!(*run_at >= next, "{run_at} before {next}");
    assert!(
        runs.iter()
            .all(|(_, at)| *at <= paused_at + chrono::TimeDelta::seconds(1) || *at >= next),
        "an instance for the paused time: {runs:?}"
    );

    let subject = format!("subject=schedules/{id}");
    let kinds: Vec<String> = events(&server, &format!("type=schedule.*&{subject}"))
        .await
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["schedule.created", "schedule.paused", "schedule.resumed"]
    );

    // Deleted: 409 both ways; unknown: 404.
    let (status, _, _) = http_raw(
        server.addr,
        "DELETE",
        &format!("/api/schedules/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    for action in ["pause", "resume"] {
        let (status, problem) = server
            .post(&format!("/api/schedules/{id}/{action}"), &json!({}))
            .await;
        assert_eq!(status, 409, "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("deleted"));
        let (status, _) = server
            .post(&format!("/api/schedules/999999/{action}"), &json!({}))
            .await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn a_schedule_lists_its_occurrences_in_its_own_zone() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    let body = json!({
        "Package": {"package_name": "nightly-report", "path": "cloudinary/studioPackages/report.std"},
        "Robot": {"robot_name": "R", "robot_address": ROBOT},
        "Schedule": {"cron": "30 9 * * *", "timezone": "America/New_York"},
    });
    let created = create(&server, &body).await;
    let utc = created["next_occurrences"].as_array().unwrap();
    let local = created["next_occurrences_local"].as_array().unwrap();
    assert_eq!(utc.len(), 5);
    assert_eq!(local.len(), 5);
    for (utc, local) in utc.iter().zip(local) {
        let text = local.as_str().unwrap();
        // 09:30 on the wall clock of New York, with its offset (EST or EDT).
        assert!(text.contains("T09:30:00"), "{text}");
        assert!(
            text.ends_with("-05:00") || text.ends_with("-04:00"),
            "{text}"
        );
        assert_eq!(time(local), time(utc));
    }
    let id = created["id"].as_i64().unwrap();
    let (_, listed) = server.get("/api/schedules").await;
    assert_eq!(listed["items"][0]["id"], id);
    assert_eq!(listed["items"][0]["next_occurrences_local"], json!(local));
}

async fn put(server: &Server, path: &str, body: &str) -> (u16, String, Value) {
    let (status, headers, text) = http_raw(server.addr, "PUT", path, Some(body), &[]).await;
    let location = headers
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        location,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_robot_recorded_in_advance_gets_its_jobs_when_it_first_connects() {
    let server = Server::start(&[]);
    const NEW: &str = "001AFFDB45C9";
    let body = json!({"robot_name": "Finance-7"}).to_string();
    // Any spelling of a MAC names the same robot.
    let (status, location, robot) = put(&server, "/api/robots/00-1a-ff-db-45-c9", &body).await;
    assert_eq!(status, 201, "{robot}");
    assert_eq!(location, format!("/api/robots/{NEW}"));
    assert_eq!(robot["robot_address"], NEW);
    assert_eq!(robot["robot_name"], "Finance-7");
    assert_eq!(robot["online"], false);
    for never in [
        "first_seen",
        "last_seen",
        "user_id",
        "metadata",
        "connection_id",
    ] {
        assert_eq!(robot[never], Value::Null, "{never}: {robot}");
    }
    let (status, shown) = server.get(&format!("/api/robots/{NEW}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown, robot);
    // The same again: 200 and no change; another name: 200, renamed.
    let (status, location, same) = put(&server, &format!("/api/robots/{NEW}"), &body).await;
    assert_eq!((status, location.as_str()), (200, ""));
    assert_eq!(same, robot);
    let renamed = json!({"robot_name": "Finance-8"}).to_string();
    let (status, _, robot) = put(&server, &format!("/api/robots/{NEW}"), &renamed).await;
    assert_eq!(status, 200);
    assert_eq!(robot["robot_name"], "Finance-8");
    let updates = events(&server, &format!("type=robot.*&subject=robots/{NEW}")).await;
    let kinds: Vec<&str> = updates
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["robot.updated", "robot.updated"], "{updates:?}");
    assert_eq!(updates[1]["data"]["robot"]["robot_name"], "Finance-8");

    // It counts as registered for triggers; its job waits for it.
    let job = create(&server, &trigger(NEW, now_schedule())).await;
    let id = job["id"].as_i64().unwrap();
    let (status, jobs) = server.get(&format!("/api/robots/{NEW}/jobs")).await;
    assert_eq!(status, 200);
    assert_eq!(jobs["items"][0]["id"], id);
    let (status, messages) = server.get(&format!("/api/robots/{NEW}/messages")).await;
    assert_eq!(status, 200, "{messages}");

    // It connects for the first time and gets the job.
    let mut ws = server.robot("Finance-8", NEW).await;
    let (sent, _, _) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(sent, id);
    let (_, robot) = server.get(&format!("/api/robots/{NEW}")).await;
    assert_eq!(robot["online"], true);
    assert!(robot["first_seen"].is_string(), "{robot}");
    assert!(robot["metadata"].is_object(), "{robot}");
    let registered = events(
        &server,
        &format!("type=robot.registered&subject=robots/{NEW}"),
    )
    .await;
    assert_eq!(registered.len(), 1);
}

#[tokio::test]
async fn unknown_addresses_are_404_and_routes_are_never_robots() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    for path in [
        "/api/robots/FFFFFFFFFFF0",
        "/api/robots/FFFFFFFFFFF0/jobs",
        "/api/robots/FFFFFFFFFFF0/messages",
        "/api/robots/FFFFFFFFFFF0/credentials",
    ] {
        let (status, problem) = server.get(path).await;
        assert_eq!(status, 404, "{path}: {problem}");
    }
    let body = json!({"robot_name": "X"}).to_string();
    for reserved in ["package", "connect"] {
        let (status, _, problem) = put(&server, &format!("/api/robots/{reserved}"), &body).await;
        assert_eq!(status, 422, "{reserved}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "robot_address", "{problem}");
    }
    // The address as a robot's metadata is checked; the name as a trigger's.
    let cases = [
        ("/api/robots/%20", body.clone(), "robot_address"),
        ("/api/robots/bad%01name", body.clone(), "robot_address"),
        (
            "/api/robots/00000000000A",
            json!({"robot_name": ""}).to_string(),
            "robot_name",
        ),
        (
            "/api/robots/00000000000A",
            json!({"robot_name": "a\nb"}).to_string(),
            "robot_name",
        ),
        (
            "/api/robots/00000000000A",
            json!({"robot_name": "A", "pools": []}).to_string(),
            "pools",
        ),
    ];
    for (path, body, field) in cases {
        let (status, _, problem) = put(&server, path, &body).await;
        assert_eq!(status, 422, "{path} {body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    // Nothing was stored for them.
    let (_, robots) = server.get("/api/robots").await;
    assert_eq!(robots["items"].as_array().unwrap().len(), 1, "{robots}");
    // Unknown ones stay unknown to triggers.
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/jobs",
        Some(&trigger("00000000000A", now_schedule()).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 404);
}
