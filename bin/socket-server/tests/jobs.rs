#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Issue 3 end to end: triggers, schedules, delivery in both dialects, reports, declines,
//! resends, cancel and force, restarts.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{Server, http, http_raw, metadata, next_package, next_text, send, until_confirmed};
use futures_util::SinkExt;
use rpa_testkit::{Trigger, rfc3339_millis as rfc3339};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const ROBOT: &str = "001AFFDB45C2";

fn trigger(schedule: Value) -> Value {
    Trigger::new("package-x74s-eg", "cloudinary/studioPackages/pkg1-x74s.std")
        .robot("LAPTOP-TAUNF8FD", ROBOT)
        .schedule(schedule)
        .to_json()
}

fn in_secs(seconds: i64) -> Value {
    json!({"at": rfc3339(Utc::now() + TimeDelta::seconds(seconds))})
}

async fn create(server: &Server, body: &Value) -> Value {
    let (status, job) = server.post("/api/jobs", body).await;
    assert_eq!(status, 201, "{job}");
    job
}

async fn job(server: &Server, id: i64) -> Value {
    let (status, job) = server.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(status, 200);
    job
}

async fn wait_status(server: &Server, id: i64, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..1000 {
        last = job(server, id).await;
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} never became {status}: {last}");
}

#[tokio::test]
async fn each_schedule_form_delivers_at_its_moment_and_never_early() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", ROBOT).await;
    let now = Utc::now();
    let soon = now + TimeDelta::seconds(2);
    let forms = [
        json!({"at": rfc3339(soon)}),
        json!({"date": soon.format("%-d-%-m").to_string(), "time": soon.format("%-H:%-M:%-S").to_string()}),
        json!({"date": soon.format("%-d-%-m-%Y").to_string(), "time": soon.format("%H:%M:%S").to_string()}),
        json!({"date": soon.format("%Y-%m-%d").to_string(), "time": soon.format("%H:%M:%S").to_string(), "timezone": "UTC"}),
        // H:M of this minute is at most 60 s ago: it runs now.
        json!({"date": now.format("%Y-%m-%d").to_string(), "time": now.format("%H:%M").to_string()}),
    ];
    let mut expected = std::collections::HashMap::new();
    for form in forms {
        let created = create(&server, &trigger(form.clone())).await;
        let run_at: DateTime<Utc> = created["run_at"].as_str().unwrap().parse().unwrap();
        expected.insert(created["id"].as_i64().unwrap(), run_at);
    }
    for _ in 0..expected.len() {
        let (id, _, _) = next_package(&mut ws, Duration::from_secs(10))
            .await
            .unwrap();
        let received = Utc::now();
        let run_at = expected[&id];
        assert!(
            received >= run_at,
            "job {id} arrived {} early",
            run_at - received
        );
        assert!(received - run_at < TimeDelta::seconds(1), "job {id} late");
        wait_status(&server, id, "Executed").await;
    }
}

#[tokio::test]
async fn each_dialect_gets_the_exact_notification_shape() {
    let server = Server::start(&[]);
    let mut underscore = server.robot("R", ROBOT).await;
    let mut plain = server.connect("/").await;
    send(&mut plain, &metadata("event", "P", "00000000000B")).await;
    server.wait_online("00000000000B", true).await;

    let first = create(&server, &trigger(in_secs(0))).await;
    let (_, _, text) = next_package(&mut underscore, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"_event":"notification","value":"{{\"package_name\":\"package-x74s-eg\",\"path\":\"cloudinary/studioPackages/pkg1-x74s.std\",\"job_id\":{}}}"}}"#,
            first["id"]
        )
    );

    let mut body = trigger(in_secs(0));
    body["Robot"]["robot_address"] = json!("00000000000B");
    body["Package"]["extra"] = json!({"kept": [1, 2]});
    let second = create(&server, &body).await;
    let (_, _, text) = next_package(&mut plain, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"event":"notification","value":{{"package_name":"package-x74s-eg","path":"cloudinary/studioPackages/pkg1-x74s.std","extra":{{"kept":[1,2]}},"job_id":{}}}}}"#,
            second["id"]
        )
    );
}

#[tokio::test]
async fn a_trigger_answers_201_with_location_and_writes_the_package_file() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    let body = trigger(in_secs(3600));
    let (status, headers, text) = http_raw(
        server.addr,
        "POST",
        "/api/jobs",
        Some(&body.to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    let job: Value = serde_json::from_str(&text).unwrap();
    let id = job["id"].as_i64().unwrap();
    assert_eq!(headers["location"], format!("/api/jobs/{id}").as_str());
    assert_eq!(job["status"], "Pending");
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["robot_address"], ROBOT);
    assert_eq!(job["robot_name"], "LAPTOP-TAUNF8FD");
    assert_eq!(job["schedule_id"], Value::Null);
    assert_eq!(job["package"], body["Package"]);
    let file = server
        .dir
        .join("packages")
        .join(format!("package-x74s-eg_{id}"));
    // Written right after the commit by the package-file writer.
    let content = common::eventually(Duration::from_secs(5), || async {
        std::fs::read_to_string(&file).ok()
    })
    .await;
    assert_eq!(
        content,
        format!(
            r#"{{"Package":{{"package_name":"package-x74s-eg","path":"cloudinary/studioPackages/pkg1-x74s.std"}},"JobID":{id}}}"#
        )
    );
    let detail = job_events(&server, id).await;
    assert_eq!(detail[0]["to"], "Pending");
}

async fn job_events(server: &Server, id: i64) -> Vec<Value> {
    job(server, id).await["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn reports_of_success_and_failure_finish_jobs() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", ROBOT).await;
    for (status, expected) in [("success", "Succeeded"), ("failure", "Failed")] {
        let created = create(&server, &trigger(in_secs(0))).await;
        let (id, _, _) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
        assert_eq!(json!(id), created["id"]);
        wait_status(&server, id, "Executed").await;
        let report = json!({"job_id": id, "status": status, "message": "done here"});
        send(
            &mut ws,
            &json!({"_event": "client robot message", "value": report}),
        )
        .await;
        let done = wait_status(&server, id, expected).await;
        if expected == "Failed" {
            assert!(done["last_error"].as_str().unwrap().contains("done here"));
        }
    }
    // A report on another robot's job changes nothing.
    let mut other = server.robot("O", "00000000000B").await;
    let created = create(&server, &trigger(in_secs(0))).await;
    let id = created["id"].as_i64().unwrap();
    next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    wait_status(&server, id, "Executed").await;
    send(
        &mut other,
        &json!({"_event": "client robot message", "value": {"job_id": id, "status": "success"}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(job(&server, id).await["status"], "Executed");
}

#[tokio::test]
async fn a_declined_package_is_resent_with_back_off_then_fails_at_the_limit() {
    let server = Server::start(&["--max-delivery-attempts", "3"]);
    let mut ws = server.robot("R", ROBOT).await;
    let created = create(&server, &trigger(in_secs(0))).await;
    let id = created["id"].as_i64().unwrap();
    let mut arrivals = Vec::new();
    for _ in 0..3 {
        let (got, _, _) = next_package(&mut ws, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(got, id);
        arrivals.push(std::time::Instant::now());
        wait_status(&server, id, "Executed").await;
        // The C# robot declines with an empty name.
        send(
            &mut ws,
            &json!({"_event": "Decline pkg reception", "value": ""}),
        )
        .await;
    }
    let failed = wait_status(&server, id, "Failed").await;
    assert_eq!(failed["attempts"], 3);
    assert!(failed["last_error"].as_str().unwrap().contains("declined"));
    // Back-off: about 1 s, then 2 s.
    assert!(arrivals[1] - arrivals[0] >= Duration::from_millis(950));
    assert!(arrivals[2] - arrivals[1] >= Duration::from_millis(1950));
    assert_eq!(
        next_text(&mut ws, Duration::from_millis(1500)).await,
        None,
        "no more sendings"
    );
}

#[tokio::test]
async fn a_job_for_an_offline_robot_waits_and_is_sent_when_it_connects() {
    let server = Server::start(&[]);
    let ws = server.robot("R", ROBOT).await;
    drop(ws);
    server.wait_online(ROBOT, false).await;
    let created = create(&server, &trigger(in_secs(0))).await;
    let id = created["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = job(&server, id).await;
    assert_eq!(waiting["status"], "Pending");
    assert!(
        waiting["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("offline"))
    );
    let mut ws = server.robot("R", ROBOT).await;
    let (got, _, _) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got, id);
    wait_status(&server, id, "Executed").await;
}

#[tokio::test]
async fn cancel_and_force_work_through_both_route_families() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", ROBOT).await;
    let later = || trigger(in_secs(3600));

    // Cancel: the API answers the job; the old routes their exact bodies; slash optional.
    let a = create(&server, &later()).await["id"].as_i64().unwrap();
    let (status, cancelled) = server
        .post(&format!("/api/jobs/{a}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, cancelled["status"].clone()),
        (200, json!("Cancelled"))
    );
    let (status, problem) = server
        .post(&format!("/api/jobs/{a}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "{problem}");
    for path in ["/jobs/cancel/{}/", "/jobs/cancel/{}", "/api/jobs/cancel/{}"] {
        let id = create(&server, &later()).await["id"].as_i64().unwrap();
        let (status, body) = server.get(&path.replace("{}", &id.to_string())).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"Job": id.to_string(), "Status": "Cancelled Job successfully"})
        );
        let (status, body) = server.get(&path.replace("{}", &id.to_string())).await;
        assert_eq!(status, 409);
        assert_eq!(body["Alert"], "Failed to cancel job");
    }
    let (status, body) = server.get("/jobs/cancel/999999/").await;
    assert_eq!(
        (status, body["Alert"].clone()),
        (404, json!("Failed to cancel job"))
    );

    // Force: sent at once to an online robot.
    let b = create(&server, &later()).await["id"].as_i64().unwrap();
    let (status, forced) = server
        .post(&format!("/api/jobs/{b}/force"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(forced["status"], "Executed");
    assert_eq!(
        next_package(&mut ws, Duration::from_secs(5))
            .await
            .unwrap()
            .0,
        b
    );
    let (status, body) = server
        .post(&format!("/api/jobs/{b}/force"), &json!({}))
        .await;
    assert_eq!((status, body["status"].clone()), (409, json!(409)));
    for path in ["/jobs/force/{}/", "/api/jobs/force/{}"] {
        let id = create(&server, &later()).await["id"].as_i64().unwrap();
        let (status, body) = server.get(&path.replace("{}", &id.to_string())).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"Job": id.to_string(), "Status": "Forced to be executed successfully"})
        );
        assert_eq!(
            next_package(&mut ws, Duration::from_secs(5))
                .await
                .unwrap()
                .0,
            id
        );
        let (status, body) = server.get(&path.replace("{}", &id.to_string())).await;
        assert_eq!(
            (status, body["Alert"].clone()),
            (409, json!("Failed to force job"))
        );
    }
    let (status, body) = server.get("/api/jobs/force/abc").await;
    assert_eq!(
        (status, body["Alert"].clone()),
        (404, json!("Failed to force job"))
    );

    // Force for an offline robot: due now, still Pending, sent when it connects. (The robot
    // reads on first: its pongs confirm the packages it got, which are not sent again.)
    assert_eq!(next_text(&mut ws, Duration::from_millis(300)).await, None);
    drop(ws);
    server.wait_online(ROBOT, false).await;
    let c = create(&server, &later()).await["id"].as_i64().unwrap();
    let (status, forced) = server
        .post(&format!("/api/jobs/{c}/force"), &json!({}))
        .await;
    assert_eq!((status, forced["status"].clone()), (200, json!("Pending")));
    let mut ws = server.robot("R", ROBOT).await;
    assert_eq!(
        next_package(&mut ws, Duration::from_secs(5))
            .await
            .unwrap()
            .0,
        c
    );
}

#[tokio::test]
async fn a_retried_trigger_with_the_same_idempotency_key_creates_one_job() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    let body = trigger(in_secs(3600)).to_string();
    let key = [("idempotency-key", "order-42")];
    let (s1, first) = http(server.addr, "POST", "/api/jobs", Some(&body), &key).await;
    let (s2, second) = http(server.addr, "POST", "/api/jobs", Some(&body), &key).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first, second, "a retry gets the same body");
    // Even after the job changed, the retry gets the first answer again.
    server
        .post(&format!("/api/jobs/{}/cancel", first["id"]), &json!({}))
        .await;
    let (s4, third) = http(server.addr, "POST", "/api/jobs", Some(&body), &key).await;
    assert_eq!((s4, third), (201, first.clone()));
    let other = trigger(in_secs(7200)).to_string();
    let (s3, problem) = http(server.addr, "POST", "/api/jobs", Some(&other), &key).await;
    assert_eq!(s3, 409, "{problem}");
    let (_, list) = server.get("/api/jobs").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let packages = std::fs::read_dir(server.dir.join("packages"))
        .unwrap()
        .count();
    assert_eq!(packages, 1, "the retries left no package files");
}

#[tokio::test]
async fn every_validation_error_is_a_problem_and_stores_nothing() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    let past = rfc3339(Utc::now() - TimeDelta::seconds(120));
    let with = |pointer: &str, value: Value| {
        let mut body = trigger(in_secs(3600));
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let without = |object: &str, field: &str| {
        let mut body = trigger(in_secs(3600));
        body[object].as_object_mut().unwrap().remove(field);
        body
    };
    let missing = [
        without("Package", "package_name"),
        without("Package", "path"),
        without("Robot", "robot_name"),
        without("Robot", "robot_address"),
        with("/Package/path", json!("")),
        json!({"Robot": {"robot_name": "x", "robot_address": ROBOT}, "Schedule": {"at": rfc3339(Utc::now())}}),
        json!({"Package": {"package_name": "p", "path": "a"}, "Robot": {"robot_name": "x", "robot_address": ROBOT}}),
        json!({"Package": {"package_name": "p", "path": "a"}, "Robot": {"robot_name": "x", "robot_address": ROBOT}, "Schedule": {"date": "15-7"}}),
    ];
    let invalid = [
        with("/Package/package_name", json!("../etc/passwd")),
        with("/Package/package_name", json!(".hidden")),
        with("/Package/path", json!("../../secret")),
        with("/Package/path", json!("/etc/passwd")),
        with("/Package/path", json!("C:\\Windows")),
        with("/Package/path", json!("a/%2e%2e/b")),
        with("/Package/path", json!(42)),
        with("/Schedule", json!({"at": past})),
        with("/Schedule", json!({"date": "31-2", "time": "9:00"})),
        with("/Schedule", json!({"date": "29-2-2027", "time": "9:00"})),
        with("/Schedule", json!({"date": "1-1-2099", "time": "25:00"})),
        with("/Schedule", json!({"at": "tomorrow"})),
        with(
            "/Schedule",
            json!({"at": rfc3339(Utc::now()), "timezone": "Mars/Olympus"}),
        ),
        with(
            "/Schedule",
            json!({"at": rfc3339(Utc::now()), "timeZone": "UTC"}),
        ),
    ];
    for body in missing.iter().chain(&invalid) {
        let (status, problem) = server.post("/api/jobs", body).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["status"], 422);
        assert!(
            !problem["errors"].as_array().unwrap().is_empty(),
            "{problem}"
        );
    }
    for (bodies, alert) in [
        (&missing[..], "Package missing required data"),
        (&invalid[..], "Package hasn't been received successfully"),
    ] {
        for body in bodies {
            for route in ["/robots/package", "/api/robots/package", "/pkg"] {
                let (status, problem) = server.post(route, body).await;
                assert_eq!(status, 422, "{route} {body}");
                assert_eq!(problem["Alert"], alert, "{route} {body}: {problem}");
            }
        }
    }
    // Malformed JSON, wrong content type, unknown robot, oversized body.
    let (status, problem) = http(server.addr, "POST", "/api/jobs", Some("{not json"), &[]).await;
    assert_eq!((status, problem["Alert"].clone()), (400, Value::Null));
    let (status, problem) = http(server.addr, "POST", "/pkg", Some("{not json"), &[]).await;
    assert_eq!(
        (status, problem["Alert"].clone()),
        (400, json!("Package hasn't been received successfully"))
    );
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/jobs",
        Some("{}"),
        &[("content-type", "text/plain")],
    )
    .await;
    assert_eq!(status, 415);
    let (status, problem) = server
        .post(
            "/api/jobs",
            &with("/Robot/robot_address", json!("FFFFFFFFFFFF")),
        )
        .await;
    assert_eq!(status, 404);
    assert!(problem["detail"].as_str().unwrap().contains("FFFFFFFFFFFF"));
    let huge =
        json!({"Package": {"package_name": "p", "path": "a", "blob": "x".repeat(1_100_000)}});
    let (status, _) = server.post("/api/jobs", &huge).await;
    assert_eq!(status, 413);

    let (_, list) = server.get("/api/jobs").await;
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "nothing stored: {list}"
    );
    let files = std::fs::read_dir(server.dir.join("packages"))
        .unwrap()
        .count();
    assert_eq!(files, 0, "no package file written");
    let outside: Vec<_> = std::fs::read_dir(&server.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        outside
            .iter()
            .all(|n| ["data", "packages", "serverLogs"].contains(&n.as_str())),
        "{outside:?}"
    );
}

#[tokio::test]
async fn listings_filter_by_status_and_robot_in_keyset_pages() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    let _other = server.robot("O", "00000000000B").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut body = trigger(in_secs(3600));
        if n % 2 == 1 {
            body["Robot"]["robot_address"] = json!("00000000000B");
        }
        ids.push(create(&server, &body).await["id"].as_i64().unwrap());
    }
    server
        .post(&format!("/api/jobs/{}/cancel", ids[0]), &json!({}))
        .await;
    let (_, page) = server.get("/api/jobs?limit=2").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [ids[4], ids[3]]
    );
    assert_eq!(page["next_after"], ids[3]);
    let (_, next) = server
        .get(&format!("/api/jobs?limit=2&after={}", ids[3]))
        .await;
    assert_eq!(next["items"][0]["id"], ids[2]);
    let (_, pending) = server
        .get(&format!("/api/jobs?status=Pending&robot={ROBOT}"))
        .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 2);
    let (_, cancelled) = server.get("/api/jobs?status=cancelled").await;
    assert_eq!(cancelled["items"][0]["id"], ids[0]);
    let (_, of_robot) = server.get("/api/robots/00:00:00:00:00:0b/jobs").await;
    assert_eq!(of_robot["items"].as_array().unwrap().len(), 2);
    assert_eq!(server.get("/api/jobs?status=Done").await.0, 400);
    assert_eq!(server.get("/api/jobs?limit=501").await.0, 400);
    assert_eq!(server.get("/api/robots/FFFFFFFFFFFF/jobs").await.0, 404);
    assert_eq!(server.get("/api/jobs/999999").await.0, 404);
}

#[tokio::test]
async fn after_kill_9_every_job_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &[]);
    let mut ws = server.robot("R", ROBOT).await;
    // One delivered, one due while the server is down, one far in the future, one cancelled.
    let delivered = create(&server, &trigger(in_secs(0))).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        next_package(&mut ws, Duration::from_secs(5))
            .await
            .unwrap()
            .0,
        delivered
    );
    // Confirmed before the robot goes: a sending unconfirmed when its connection ends is due
    // again (and would rightly be sent again after the restart).
    until_confirmed(&server, &mut ws, 1.0).await;
    wait_status(&server, delivered, "Executed").await;
    let due = create(&server, &trigger(in_secs(2))).await["id"]
        .as_i64()
        .unwrap();
    let future = create(&server, &trigger(in_secs(3600))).await["id"]
        .as_i64()
        .unwrap();
    let cancelled = create(&server, &trigger(in_secs(3600))).await["id"]
        .as_i64()
        .unwrap();
    server
        .post(&format!("/api/jobs/{cancelled}/cancel"), &json!({}))
        .await;
    drop(ws);
    server.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let server = Server::start_in(dir.path(), &[]);
    assert_eq!(job(&server, delivered).await["status"], "Executed");
    assert_eq!(job(&server, future).await["status"], "Pending");
    assert_eq!(job(&server, cancelled).await["status"], "Cancelled");
    // The job that fell due while the server was down runs once, late, when the robot is back.
    let mut ws = server.robot("R", ROBOT).await;
    let (id, _, _) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(id, due);
    wait_status(&server, due, "Executed").await;
    assert_eq!(
        next_text(&mut ws, Duration::from_millis(500)).await,
        None,
        "sent once"
    );
}

#[tokio::test]
async fn jobs_missed_beyond_the_misfire_grace_fail_as_missed() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &[]);
    let ws = server.robot("R", ROBOT).await;
    let id = create(&server, &trigger(in_secs(1))).await["id"]
        .as_i64()
        .unwrap();
    drop(ws);
    server.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = Server::start_in(dir.path(), &["--misfire-grace", "1s"]);
    let _ws = server.robot("R", ROBOT).await;
    let failed = wait_status(&server, id, "Failed").await;
    assert!(
        failed["last_error"].as_str().unwrap().starts_with("missed"),
        "{failed}"
    );
}

#[tokio::test]
async fn extended_robots_acknowledge_and_get_unacknowledged_packages_again() {
    let server = Server::start(&["--ack-timeout", "1s", "--max-delivery-attempts", "3"]);
    let mut ws = server.connect("/").await;
    let mut meta = metadata("_event", "X", ROBOT);
    meta["value"]["protocol"] = json!(2);
    send(&mut ws, &meta).await;
    let welcome: Value =
        serde_json::from_str(&next_text(&mut ws, Duration::from_secs(5)).await.unwrap()).unwrap();
    assert_eq!(welcome["_event"], "registered");
    assert_eq!(welcome["value"]["protocol"], 2);
    assert_eq!(welcome["value"]["ack_timeout_ms"], 1000);

    // Acknowledged: sent once.
    let acked = create(&server, &trigger(in_secs(0))).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        next_package(&mut ws, Duration::from_secs(5))
            .await
            .unwrap()
            .0,
        acked
    );
    send(
        &mut ws,
        &json!({"_event": "Ack pkg reception", "value": {"job_id": acked}}),
    )
    .await;
    // Not acknowledged: sent again after the timeout.
    let ignored = create(&server, &trigger(in_secs(0))).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        next_package(&mut ws, Duration::from_secs(5))
            .await
            .unwrap()
            .0,
        ignored
    );
    let (again, _, _) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(again, ignored);
    send(
        &mut ws,
        &json!({"_event": "Ack pkg reception", "value": {"job_id": ignored}}),
    )
    .await;
    assert_eq!(next_text(&mut ws, Duration::from_millis(1500)).await, None);
    assert_eq!(job(&server, acked).await["attempts"], 1);
    assert_eq!(job(&server, ignored).await["attempts"], 2);

    // Dropped before acknowledging: sent again on the next connection.
    let dropped = create(&server, &trigger(in_secs(0))).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        next_package(&mut ws, Duration::from_secs(5))
            .await
            .unwrap()
            .0,
        dropped
    );
    drop(ws);
    server.wait_online(ROBOT, false).await;
    let mut ws = server.connect("/").await;
    send(&mut ws, &meta).await;
    next_text(&mut ws, Duration::from_secs(5)).await.unwrap(); // registered
    assert_eq!(
        next_package(&mut ws, Duration::from_secs(5))
            .await
            .unwrap()
            .0,
        dropped
    );

    // Bad frames get an error message.
    ws.send(Message::text("not json")).await.unwrap();
    let error: Value =
        serde_json::from_str(&next_text(&mut ws, Duration::from_secs(5)).await.unwrap()).unwrap();
    assert_eq!(error["_event"], "error");
    assert_eq!(error["value"]["code"], "not_json");
}

#[tokio::test]
async fn a_package_written_to_a_robot_that_went_silent_is_sent_again() {
    let server = Server::start(&["--ping-interval", "300ms"]);
    let silent = server.robot("R", ROBOT).await;
    let id = create(&server, &trigger(in_secs(0))).await["id"]
        .as_i64()
        .unwrap();
    wait_status(&server, id, "Executed").await;
    // The robot never reads again, so it never answers the ping that followed the package:
    // nothing proves the package arrived.
    server.wait_online(ROBOT, false).await;
    let waiting = wait_status(&server, id, "Pending").await;
    assert_eq!(waiting["attempts"], 1);
    drop(silent);
    let mut ws = server.robot("R", ROBOT).await;
    assert_eq!(
        next_package(&mut ws, Duration::from_secs(5))
            .await
            .unwrap()
            .0,
        id
    );
    let sent = wait_status(&server, id, "Executed").await;
    assert_eq!(sent["attempts"], 2);
}

#[tokio::test]
async fn a_robot_with_a_backlog_gets_it_as_fast_as_it_reads_without_churn() {
    let server = Server::start(&["--outbound-queue", "2"]);
    let ws = server.robot("R", ROBOT).await;
    drop(ws);
    server.wait_online(ROBOT, false).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(
            create(&server, &trigger(in_secs(0))).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let mut ws = server.robot("R", ROBOT).await;
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let (id, _, _) = next_package(&mut ws, Duration::from_secs(5))
            .await
            .expect("the backlog keeps coming");
        got.push(id);
    }
    got.sort_unstable();
    assert_eq!(got, ids, "each once");
    for id in ids {
        let events = job(&server, id).await["events"].as_array().unwrap().clone();
        let handed_back = events
            .iter()
            .filter(|e| e["reason"].as_str().unwrap().contains("queue was full"))
            .count();
        assert_eq!(
            handed_back, 0,
            "job {id} was claimed and handed back: {events:?}"
        );
    }
}
