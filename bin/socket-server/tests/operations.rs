#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Operations end to end: metrics, retention of logs and finished jobs.

mod common;

use std::time::Duration;

use common::{Server, eventually, metric_value as value, metrics, next_text, send};
use rpa_testkit::Trigger;
use serde_json::{Value, json};

const ROBOT: &str = "001AFFDB45C2";

fn trigger() -> Value {
    Trigger::new("p", "a/b.std").robot("R", ROBOT).to_json()
}

#[tokio::test]
async fn metrics_follow_robots_and_jobs() {
    let server = Server::start(&[]);
    let before = metrics(&server).await;
    assert_eq!(value(&before, "rpa_robots_connected"), 0.0);
    assert_eq!(value(&before, r#"rpa_jobs{status="Succeeded"}"#), 0.0);

    let mut ws = server.robot("R", ROBOT).await;
    let (status, job) = server.post("/api/jobs", &trigger()).await;
    assert_eq!(status, 201);
    let id = job["id"].as_i64().unwrap();
    next_text(&mut ws, Duration::from_secs(5)).await.unwrap();
    send(
        &mut ws,
        &json!({"_event": "client robot message", "value": {"job_id": id, "status": "success"}}),
    )
    .await;
    ws.send_bad().await;
    let after = eventually(Duration::from_secs(5), || async {
        let text = metrics(&server).await;
        let done = value(&text, r#"rpa_jobs{status="Succeeded"}"#) == 1.0
            && value(&text, "rpa_bad_frames_total") == 1.0;
        done.then_some(text)
    })
    .await;
    assert_eq!(value(&after, "rpa_robots_connected"), 1.0);
    assert_eq!(value(&after, "rpa_robots_registered"), 1.0);
    assert_eq!(value(&after, "rpa_deliveries_total"), 1.0);
    assert_eq!(value(&after, "rpa_triggers_accepted_total"), 1.0);
    assert_eq!(value(&after, "rpa_reports_total"), 1.0);
    assert_eq!(value(&after, "rpa_bad_frames_total"), 1.0);
    assert_eq!(value(&after, "rpa_delivery_lateness_seconds_count"), 1.0);
    assert!(value(&after, "rpa_db_batch_size_count") >= 3.0);
    let (status, _) = server.post("/api/jobs", &json!({})).await;
    assert_eq!(status, 422);
    let rejected = metrics(&server).await;
    assert_eq!(value(&rejected, "rpa_triggers_rejected_total"), 1.0);
}

trait BadFrame {
    async fn send_bad(&mut self);
}

impl BadFrame for common::Ws {
    async fn send_bad(&mut self) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::text("garbage"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn retention_deletes_old_logs_and_purges_finished_jobs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("serverLogs")).unwrap();
    std::fs::write(dir.path().join("serverLogs/2020-01-01.log"), "old").unwrap();
    let server = Server::start_in(
        dir.path(),
        &["--job-retention-days", "0", "--retention-interval", "1s"],
    );
    let _ws = server.robot("R", ROBOT).await;
    let mut later = trigger();
    later["Schedule"] = json!({"at": "2099-01-01T00:00:00Z"});
    let (_, kept) = server.post("/api/jobs", &later).await;
    let (_, gone) = server.post("/api/jobs", &later).await;
    let gone = gone["id"].as_i64().unwrap();
    server
        .post(&format!("/api/jobs/{gone}/cancel"), &json!({}))
        .await;
    eventually(Duration::from_secs(15), || async {
        (server.get(&format!("/api/jobs/{gone}")).await.0 == 404).then_some(())
    })
    .await;
    assert_eq!(
        server.get(&format!("/api/jobs/{}", kept["id"])).await.0,
        200,
        "pending jobs stay"
    );
    assert!(!dir.path().join("serverLogs/2020-01-01.log").exists());
    assert!(
        !dir.path().join(format!("packages/p_{gone}")).exists(),
        "its package file went too"
    );
}

#[tokio::test]
async fn an_unwritable_packages_folder_refuses_triggers_until_it_is_back() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    let mut later = trigger();
    later["Schedule"] = json!({"at": "2099-01-01T00:00:00Z"});
    // Root ignores permissions: put a file where the folder was, so every write fails.
    let folder = server.dir.join("packages");
    let aside = server.dir.join("packages.aside");
    std::fs::rename(&folder, &aside).unwrap();
    std::fs::write(&folder, "not a folder").unwrap();

    let (status, first) = server.post("/api/jobs", &later).await;
    assert_eq!(status, 201, "accepted before the writer found out: {first}");
    let refused = eventually(Duration::from_secs(10), || async {
        let (status, problem) = server.post("/api/jobs", &later).await;
        (status == 503).then_some(problem)
    })
    .await;
    assert_eq!(refused["code"], "packages_unwritable");
    let (_, jobs) = server.get("/api/jobs").await;
    let stored = jobs["items"].as_array().unwrap().len();

    std::fs::remove_file(&folder).unwrap();
    std::fs::rename(&aside, &folder).unwrap();
    eventually(Duration::from_secs(10), || async {
        (server.post("/api/jobs", &later).await.0 == 201).then_some(())
    })
    .await;
    let (_, jobs) = server.get("/api/jobs").await;
    assert_eq!(
        jobs["items"].as_array().unwrap().len(),
        stored + 1,
        "refused triggers stored nothing"
    );
    let file = folder.join(format!("p_{}", first["id"]));
    eventually(Duration::from_secs(10), || async {
        file.exists().then_some(())
    })
    .await;
}
