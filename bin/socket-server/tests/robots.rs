#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Issue 2 end to end: robots connect, register, are remembered, and the log says so.

mod common;

use std::time::Duration;

use common::{Server, close_code, eventually, metadata, next_text, send};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn robots_of_both_dialects_register_on_every_path() {
    let server = Server::start(&[]);
    let mut open = Vec::new();
    for (key, path, address) in [
        ("_event", "/", "001AFFDB45C2"),
        ("event", "/ws", "001AFFDB45C3"),
        ("_event", "/api/robots/connect", "001AFFDB45C4"),
    ] {
        let mut ws = server.connect(path).await;
        send(&mut ws, &metadata(key, "LAPTOP-TAUNF8FD", address)).await;
        let robot = server.wait_online(address, true).await;
        assert_eq!(robot["robot_name"], "LAPTOP-TAUNF8FD");
        assert_eq!(robot["user_id"], 4);
        let connection_id = robot["connection_id"].as_str().unwrap();
        assert_eq!(connection_id.len(), 36, "a UUID: {connection_id}");
        // A field robot hears nothing back on success.
        assert_eq!(next_text(&mut ws, QUIET).await, None);
        open.push(ws);
    }
    let (status, list) = server.get("/api/robots?online=true").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn metadata_as_a_json_string_with_a_uuid_is_accepted() {
    let server = Server::start(&[]);
    let mut ws = server.connect("/").await;
    let value =
        json!({"robotName": "R", "robotAddress": "aa-bb-cc-dd-ee-ff", "uuid": "5b0c"}).to_string();
    send(
        &mut ws,
        &json!({"event": "client robot metaData", "value": value}),
    )
    .await;
    let robot = server.wait_online("AABBCCDDEEFF", true).await;
    assert_eq!(robot["user_id"], "5b0c");
}

#[tokio::test]
async fn mac_spellings_are_one_robot_and_the_api_accepts_any_of_them() {
    let server = Server::start(&[]);
    let _first = server.robot("R", "00:1a:ff:db:45:c2").await;
    let (status, robot) = server.get("/api/robots/001AFFDB45C2").await;
    assert_eq!(status, 200);
    assert_eq!(robot["robot_address"], "001AFFDB45C2");
    let (status, _) = server.get("/api/robots/00-1A-FF-DB-45-C2").await;
    assert_eq!(status, 200);
    let (status, _) = server.get("/api/robots/00%3A1a%3Aff%3Adb%3A45%3Ac2").await;
    assert_eq!(status, 200);
    let _second = server.robot("R", "001AFFDB45C2").await;
    let (_, list) = server.get("/api/robots").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (status, problem) = server.get("/api/robots/FFFFFFFFFFFF").await;
    assert_eq!(status, 404);
    assert_eq!(problem["status"], 404);
}

#[tokio::test]
async fn closing_takes_a_robot_offline_and_reconnecting_brings_it_back_with_a_new_id() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", "001AFFDB45C2").await;
    let first = server.wait_online("001AFFDB45C2", true).await;
    ws.close(None).await.unwrap();
    let offline = server.wait_online("001AFFDB45C2", false).await;
    assert_eq!(offline["connection_id"], Value::Null);
    let _ws = server.robot("R", "001AFFDB45C2").await;
    let again = server.wait_online("001AFFDB45C2", true).await;
    assert_ne!(again["connection_id"], first["connection_id"]);
    assert_eq!(again["first_seen"], first["first_seen"]);
}

#[tokio::test]
async fn a_second_connection_replaces_the_first_without_taking_the_robot_offline() {
    let server = Server::start(&[]);
    let mut old = server.robot("R", "001AFFDB45C2").await;
    let before = server.wait_online("001AFFDB45C2", true).await;
    let mut new = server.connect("/").await;
    send(&mut new, &metadata("_event", "R", "001AFFDB45C2")).await;
    assert_eq!(
        close_code(&mut old, Duration::from_secs(5)).await,
        Some(4000)
    );
    let after = eventually(Duration::from_secs(5), || async {
        let (_, robot) = server.get("/api/robots/001AFFDB45C2").await;
        (robot["connection_id"] != before["connection_id"]).then_some(robot)
    })
    .await;
    // The old socket's close must not take the robot offline.
    tokio::time::sleep(QUIET).await;
    let (_, robot) = server.get("/api/robots/001AFFDB45C2").await;
    assert_eq!(robot["online"], true);
    assert_eq!(robot["connection_id"], after["connection_id"]);
    // And the new connection still works.
    send(
        &mut new,
        &json!({"_event": "client robot message", "value": "still here"}),
    )
    .await;
    eventually(Duration::from_secs(5), || async {
        let (_, page) = server.get("/api/robots/001AFFDB45C2/messages").await;
        (page["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn invalid_metadata_is_declined_in_the_robots_dialect_and_nothing_is_stored() {
    let server = Server::start(&[]);
    let cases = [
        json!({"_event": "client robot metaData", "value": {"robotName": "R"}}),
        json!({"_event": "client robot metaData", "value": {"robotName": "", "robotAddress": "A1"}}),
        json!({"_event": "client robot metaData", "value": {"robotName": 7, "robotAddress": "A1"}}),
        json!({"_event": "client robot metaData", "value": {"robotName": "R\u{7}", "robotAddress": "A1"}}),
        json!({"_event": "client robot metaData", "value": {"robotName": "R", "robotAddress": "x".repeat(256)}}),
        json!({"_event": "client robot metaData"}),
        json!({"_event": "client robot metaData", "value": "not json"}),
    ];
    for case in cases {
        let mut ws = server.connect("/").await;
        send(&mut ws, &case).await;
        let reply = next_text(&mut ws, Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            reply, r#"{"_event":"Decline metaData reception","value":" "}"#,
            "{case}"
        );
        // The socket stays open: a valid retry registers.
        send(&mut ws, &metadata("_event", "R", "A1B2C3D4E5F6")).await;
        server.wait_online("A1B2C3D4E5F6", true).await;
    }
    let mut ws = server.connect("/").await;
    send(
        &mut ws,
        &json!({"event": "client robot metaData", "value": {"robotAddress": "A"}}),
    )
    .await;
    let reply = next_text(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        reply,
        r#"{"event":"Decline metaData reception","value":" "}"#
    );
    let (_, list) = server.get("/api/robots").await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only the valid robot: {list}"
    );
}

#[tokio::test]
async fn robot_messages_are_stored_and_listed_newest_first() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", "001AFFDB45C2").await;
    for value in [json!("first"), json!({"step": 2}), json!("third\nline")] {
        send(
            &mut ws,
            &json!({"_event": "client robot message", "value": value}),
        )
        .await;
    }
    let page = eventually(Duration::from_secs(5), || async {
        let (_, page) = server
            .get("/api/robots/001AFFDB45C2/messages?limit=2")
            .await;
        (page["items"].as_array()?.len() == 2 && page["next_after"].is_i64()).then_some(page)
    })
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items[0]["value"], "third\nline");
    assert_eq!(items[1]["value"], json!({"step": 2}));
    assert_eq!(items[0]["robot_address"], "001AFFDB45C2");
    let next = format!(
        "/api/robots/001AFFDB45C2/messages?after={}",
        page["next_after"]
    );
    let (_, rest) = server.get(&next).await;
    assert_eq!(rest["items"][0]["value"], "first");
    assert_eq!(rest["next_after"], Value::Null);
    // The log holds the message on one line, escaped.
    let log = server.log();
    assert!(log.contains(r"third\nline"), "{log}");
}

#[tokio::test]
async fn registered_robots_are_pinged_and_silent_ones_are_dropped() {
    let server = Server::start(&["--ping-interval", "200ms"]);
    let mut ws = server.connect("/").await;
    // No pings before the metadata.
    let early = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
    assert!(early.is_err(), "nothing before registration: {early:?}");
    send(&mut ws, &metadata("_event", "R", "001AFFDB45C2")).await;
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while pings < 3 {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("expected pings, got {other:?}"),
        }
    }
    // Pongs count as life: the robot answered every ping while reading, so it is still online.
    server.wait_online("001AFFDB45C2", true).await;
    // Now the robot stops reading (and so stops answering): dead after three intervals.
    let started = std::time::Instant::now();
    server.wait_online("001AFFDB45C2", false).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(ws);
}

#[tokio::test]
async fn bad_frames_get_no_answer_and_disturb_nobody() {
    let server = Server::start(&[]);
    let mut bystander = server.robot("B", "00000000000B").await;
    let mut ws = server.robot("R", "001AFFDB45C2").await;
    let bad = [
        Message::text("not json"),
        Message::binary(vec![1u8, 2, 3]),
        Message::text("[1,2,3]"),
        Message::text(r#"{"_event":"who knows","value":1}"#),
        Message::text(r#"{"_event":"client robot message","value":"\ud800"}"#),
        Message::text(r#"{"value":"no event"}"#),
        Message::text("null"),
    ];
    for frame in bad {
        ws.send(frame).await.unwrap();
    }
    assert_eq!(
        next_text(&mut ws, QUIET).await,
        None,
        "field robots hear nothing"
    );
    // The connection is still usable, and the bystander undisturbed.
    send(
        &mut ws,
        &json!({"_event": "client robot message", "value": "ok"}),
    )
    .await;
    send(
        &mut bystander,
        &json!({"_event": "client robot message", "value": "me too"}),
    )
    .await;
    for address in ["001AFFDB45C2", "00000000000B"] {
        eventually(Duration::from_secs(5), || async {
            let (_, page) = server.get(&format!("/api/robots/{address}/messages")).await;
            (page["items"].as_array()?.len() == 1).then_some(())
        })
        .await;
    }
    assert_eq!(server.get("/healthz").await.0, 200);
    assert!(server.log().contains("bad frame (not_json)"));
}

#[tokio::test]
async fn a_flood_of_bad_frames_closes_the_connection_with_1008() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", "001AFFDB45C2").await;
    for _ in 0..25 {
        if ws.send(Message::text("garbage")).await.is_err() {
            break;
        }
    }
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(5)).await,
        Some(1008)
    );
    server.wait_online("001AFFDB45C2", false).await;
}

#[tokio::test]
async fn an_oversized_frame_closes_the_connection_with_1009() {
    let server = Server::start(&["--max-message-size", "1KiB", "--max-frame-size", "1KiB"]);
    let mut ws = server.robot("R", "001AFFDB45C2").await;
    let big = json!({"_event": "client robot message", "value": "x".repeat(2000)});
    let _ = ws.send(Message::text(big.to_string())).await;
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(5)).await,
        Some(1009)
    );
}

#[tokio::test]
async fn a_restart_marks_every_robot_offline() {
    let dir = tempfile::tempdir().unwrap();
    // On a shared database (PostgreSQL) the new process cannot tell a dead instance from a live
    // one until its lease passes: the robots go offline then (docs/SCALING.md).
    let shared = common::postgres_database(dir.path()).is_some();
    let args: &[&str] = if shared {
        &["--instance-lease", "1s"]
    } else {
        &[]
    };
    let mut server = Server::start_in(dir.path(), args);
    let _a = server.robot("A", "00000000000A").await;
    let _b = server.robot("B", "00000000000B").await;
    server.kill9();
    let started = std::time::Instant::now();
    let server = Server::start_in(dir.path(), args);
    let limit = if shared {
        Duration::from_secs(5)
    } else {
        Duration::ZERO
    };
    loop {
        let (_, list) = server.get("/api/robots").await;
        let items = list["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 2);
        let offline = items
            .iter()
            .all(|r| r["online"] == false && r["connection_id"].is_null());
        if offline {
            break;
        }
        assert!(started.elapsed() <= limit, "still online: {items:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_days_log_file_names_each_connection_and_robot() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", "001AFFDB45C2").await;
    let robot = server.wait_online("001AFFDB45C2", true).await;
    let connection_id = robot["connection_id"].as_str().unwrap().to_owned();
    send(
        &mut ws,
        &json!({"_event": "client robot message", "value": "hello\r\nFAKE LINE"}),
    )
    .await;
    ws.close(None).await.unwrap();
    server.wait_online("001AFFDB45C2", false).await;
    let log = eventually(Duration::from_secs(5), || async {
        let log = server.log();
        log.contains("robot offline").then_some(log)
    })
    .await;
    let ours: Vec<&str> = log.lines().filter(|l| l.contains(&connection_id)).collect();
    assert!(ours.iter().any(|l| l.contains("connected from")), "{log}");
    assert!(
        ours.iter()
            .any(|l| l.contains("registered") && l.contains("001AFFDB45C2"))
    );
    assert!(ours.iter().any(|l| l.contains("hello\\r\\nFAKE LINE")));
    assert!(
        !log.lines().any(|l| l.starts_with("FAKE LINE")),
        "a robot forged a log line"
    );
}

#[tokio::test]
async fn sigterm_closes_robot_sockets_with_1001_and_exits_0() {
    let mut server = Server::start(&[]);
    let mut a = server.robot("A", "00000000000A").await;
    let mut b = server.connect("/").await;
    server.signal("TERM");
    let (code_a, code_b) = tokio::join!(
        close_code(&mut a, Duration::from_secs(10)),
        close_code(&mut b, Duration::from_secs(10))
    );
    assert_eq!(code_a, Some(1001));
    assert_eq!(code_b, Some(1001));
    let status = server
        .wait(Duration::from_secs(10))
        .expect("exits within 10 s");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_robot_that_closes_with_a_reason_is_logged_as_such() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", "001AFFDB45C2").await;
    ws.close(Some(CloseFrame {
        code: 1000u16.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    server.wait_online("001AFFDB45C2", false).await;
    eventually(Duration::from_secs(5), || async {
        server
            .log()
            .contains("closed by the robot (code 1000)")
            .then_some(())
    })
    .await;
}

#[test]
fn a_bad_setting_stops_the_start_with_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--ping-interval", "soon"],
        vec!["--listen", "nowhere"],
        vec!["--database", "mysql://x"],
        vec!["--timezone", "Mars/Olympus"],
        vec!["--max-delivery-attempts", "0"],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_socket-server"))
            .current_dir(dir.path())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?} not named: {stderr}");
    }
}

#[test]
fn a_port_in_use_stops_the_start_naming_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .current_dir(dir.path())
        .args(["--listen", &port, "--log-stderr", "false"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("socket-server: --listen:"), "{stderr}");
}

#[test]
fn help_lists_every_setting() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--database",
        "--packages-dir",
        "--log-dir",
        "--log-level",
        "--ping-interval",
        "--timezone",
        "--misfire-grace",
        "--max-delivery-attempts",
        "DATABASE_URL",
        "RUST_LOG",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/healthz").await, (200, json!({"status": "ok"})));
    let ready = eventually(Duration::from_secs(5), || async {
        let (status, body) = server.get("/readyz").await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(ready["status"], "ready");
    let (status, problem) = server.get("/no/such/route").await;
    assert_eq!(status, 404);
    assert_eq!(problem["title"], "Not found");
}

#[test]
fn the_healthcheck_flag_reports_whether_a_server_answers() {
    let server = Server::start(&[]);
    let check = |listen: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_socket-server"))
            .args(["--listen", listen, "--healthcheck"])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(check(&server.addr.to_string()), Some(0));
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = unused.local_addr().unwrap().to_string();
    drop(unused);
    assert_eq!(check(&free), Some(1));
}
