#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Child, Command, Output, Stdio};

use rpa_protocol::{Dialect, JobReport, ReportStatus, RobotMessage};
use serde_json::{Value, json};
use support::{FakeServer, PATIENCE, notification};

fn robot_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rpa-robot"));
    command
        .args(args)
        .env_remove("RPA_ROBOT_URL")
        .env_remove("RPA_ROBOT_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

async fn wait(child: Child) -> Output {
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("rpa-robot did not exit")
        .unwrap()
        .unwrap()
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn help_documents_every_flag() {
    let output = robot_command(&["--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--url",
        "--name",
        "--address",
        "--dialect",
        "--field",
        "--metadata-as-string",
        "--user",
        "--report",
        "--decline-first",
        "--exit-after",
        "--reconnect",
        "--ping-timeout",
        "--no-ack",
        "--token",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[tokio::test]
async fn declines_then_runs_reports_and_exits() {
    let server = FakeServer::start().await;
    let url = server.url("/");
    let child = robot_command(&[
        "--url",
        &url,
        "--name",
        "PC-1",
        "--address",
        "001AFFDB45C2",
        "--user",
        "4",
        "--decline-first",
        "1",
        "--exit-after",
        "1",
    ])
    .spawn()
    .unwrap();

    let mut peer = server.accept().await;
    assert_eq!(
        peer.recv_text().await,
        r#"{"_event":"client robot metaData","value":{"robotName":"PC-1","robotAddress":"001AFFDB45C2","userID":4,"protocol":2}}"#
    );
    peer.register("conn-1", Dialect::Underscore).await;
    peer.send(&notification(5, "pkg"), Dialect::Underscore)
        .await;
    assert_eq!(
        peer.recv_frame().await.message,
        RobotMessage::Ack { job_id: 5 }
    );
    assert_eq!(
        peer.recv_frame().await.message,
        RobotMessage::DeclinePackage("pkg".to_owned())
    );
    // The server resends the declined package.
    peer.send(&notification(5, "pkg"), Dialect::Underscore)
        .await;
    assert_eq!(
        peer.recv_frame().await.message,
        RobotMessage::Ack { job_id: 5 }
    );
    let RobotMessage::Message(report) = peer.recv_frame().await.message else {
        panic!("not a report");
    };
    assert_eq!(
        JobReport::from_value(&report).map(|report| (report.job_id, report.status)),
        Some((5, ReportStatus::Success))
    );
    // The robot closes normally; reading on sends the close reply.
    assert!(matches!(
        peer.recv().await,
        tokio_tungstenite::tungstenite::Message::Close(Some(_))
    ));
    drop(peer);

    let output = wait(child).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let package = json!({"package_name": "pkg", "path": "cloudinary/studioPackages/pkg.std"});
    assert_eq!(
        lines(&output),
        vec![
            json!({"event": "registered", "connection_id": "conn-1"}),
            json!({"event": "package", "job_id": 5, "package": package}),
            json!({"event": "declined", "job_id": 5, "package_name": "pkg"}),
            json!({"event": "package", "job_id": 5, "package": package}),
            json!({"event": "reported", "job_id": 5, "status": "success"}),
        ]
    );
}

#[tokio::test]
async fn field_robot_reports_failure_and_skips_duplicates() {
    let server = FakeServer::start().await;
    let url = server.url("/ws");
    let child = robot_command(&[
        "--url",
        &url,
        "--name",
        "PC-2",
        "--address",
        "001AFFDB45C3",
        "--dialect",
        "event",
        "--field",
        "--metadata-as-string",
        "--user",
        "u-1",
        "--report",
        "failure",
        "--exit-after",
        "2",
    ])
    .spawn()
    .unwrap();

    let mut peer = server.accept().await;
    assert_eq!(
        peer.recv_text().await,
        r#"{"event":"client robot metaData","value":"{\"robotName\":\"PC-2\",\"robotAddress\":\"001AFFDB45C3\",\"uuid\":\"u-1\"}"}"#
    );
    for job_id in [1, 1, 2] {
        peer.send(&notification(job_id, "pkg"), Dialect::Plain)
            .await;
    }
    for job_id in [1, 2] {
        let frame = peer.recv_frame().await;
        assert_eq!(frame.dialect, Dialect::Plain);
        let RobotMessage::Message(report) = frame.message else {
            panic!("not a report: {frame:?}");
        };
        let report = JobReport::from_value(&report).unwrap();
        assert_eq!(
            (report.job_id, report.status),
            (job_id, ReportStatus::Failure)
        );
    }
    assert!(matches!(
        peer.recv().await,
        tokio_tungstenite::tungstenite::Message::Close(Some(_))
    ));
    drop(peer);

    let output = wait(child).await;
    assert!(output.status.success());
    let events: Vec<(String, Option<bool>)> = lines(&output)
        .iter()
        .map(|line| {
            (
                line["event"].as_str().unwrap().to_owned(),
                line.get("duplicate").and_then(Value::as_bool),
            )
        })
        .collect();
    let expected = [
        ("connected", None),
        ("package", None),
        ("reported", None),
        ("package", Some(true)),
        ("package", None),
        ("reported", None),
    ];
    assert_eq!(
        events,
        expected
            .iter()
            .map(|(event, duplicate)| (event.to_string(), *duplicate))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_connection_error_exits_1() {
    let url = {
        let server = FakeServer::start().await;
        server.url("/")
    };
    let child = robot_command(&["--url", &url, "--name", "PC-1", "--address", "001AFFDB45C2"])
        .spawn()
        .unwrap();
    let output = wait(child).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}

#[tokio::test]
async fn a_server_close_exits_1_without_reconnect() {
    let server = FakeServer::start().await;
    let url = server.url("/");
    let child = robot_command(&[
        "--url",
        &url,
        "--name",
        "PC-1",
        "--address",
        "001AFFDB45C2",
        "--field",
    ])
    .spawn()
    .unwrap();
    let mut peer = server.accept().await;
    peer.recv_text().await;
    peer.close(4000, "replaced").await;
    let output = wait(child).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        lines(&output).last(),
        Some(&json!({"event": "closed", "code": 4000, "reason": "replaced"}))
    );
}

#[tokio::test]
async fn reconnects_after_a_drop() {
    let server = FakeServer::start().await;
    let url = server.url("/");
    let child = robot_command(&[
        "--url",
        &url,
        "--name",
        "PC-1",
        "--address",
        "001AFFDB45C2",
        "--reconnect",
        "--exit-after",
        "1",
    ])
    .spawn()
    .unwrap();
    let mut peer = server.accept().await;
    let metadata = peer.recv_text().await;
    peer.register("conn-1", Dialect::Underscore).await;
    drop(peer);

    // The robot comes back after about a second and registers again.
    let mut peer = server.accept().await;
    assert_eq!(peer.recv_text().await, metadata);
    peer.register("conn-2", Dialect::Underscore).await;
    peer.send(&notification(3, "pkg"), Dialect::Underscore)
        .await;
    assert_eq!(
        peer.recv_frame().await.message,
        RobotMessage::Ack { job_id: 3 }
    );
    assert!(matches!(
        peer.recv_frame().await.message,
        RobotMessage::Message(_)
    ));
    assert!(matches!(
        peer.recv().await,
        tokio_tungstenite::tungstenite::Message::Close(Some(_))
    ));
    drop(peer);

    let output = wait(child).await;
    assert!(output.status.success());
    let events: Vec<String> = lines(&output)
        .iter()
        .map(|line| line["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "registered",
            "closed",
            "reconnecting",
            "registered",
            "package",
            "reported"
        ]
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_closes_normally_and_exits_0() {
    let server = FakeServer::start().await;
    let url = server.url("/");
    let child = robot_command(&["--url", &url, "--name", "PC-1", "--address", "001AFFDB45C2"])
        .spawn()
        .unwrap();
    let mut peer = server.accept().await;
    peer.recv_text().await;
    peer.register("conn-1", Dialect::Underscore).await;
    // A pong proves the robot has read the registration and left the handshake: a signal that
    // arrives while the robot is still registering drops the half-open socket unread (a reset,
    // not a close frame), which is right for the robot but not what this test is about.
    peer.send_raw(tokio_tungstenite::tungstenite::Message::Ping(
        b"registered?".to_vec().into(),
    ))
    .await;
    assert!(matches!(
        peer.recv_raw().await,
        tokio_tungstenite::tungstenite::Message::Pong(_)
    ));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let tokio_tungstenite::tungstenite::Message::Close(Some(frame)) = peer.recv().await else {
        panic!("no close frame");
    };
    assert_eq!(u16::from(frame.code), 1000);
    drop(peer);
    let output = wait(child).await;
    assert!(output.status.success(), "{:?}", output.status);
    assert_eq!(
        lines(&output),
        vec![json!({"event": "registered", "connection_id": "conn-1"})]
    );
}

/// The README's "try it" block, as a new user pastes it.
fn readme_try_it() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let after = &readme[readme.find("To try it").expect("the try-it paragraph")..];
    let block = &after[after.find("```sh").unwrap() + "```sh".len()..];
    let block = &block[..block.find("```").unwrap()];
    block.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn the_readme_try_it_robot_waits_for_a_server_that_starts_later() {
    let lines = readme_try_it();
    let position = |prefix: &str| {
        lines
            .iter()
            .position(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in {lines:#?}"))
    };
    let server = position("cargo run --release &");
    let robot = position("cargo run --release -p rpa-robot -- ");
    let wait = position("until curl -sf localhost:4000/api/robots/");
    // `-sS`: a refused connection is shown, not hidden.
    let trigger = position("curl -sS -XPOST localhost:4000/api/jobs");
    assert!(
        server < robot && robot < wait && wait < trigger,
        "{lines:#?}"
    );

    // The robot, started as written before its server listens, keeps trying until it does.
    let args: Vec<String> = lines[robot]
        .trim_start_matches("cargo run --release -p rpa-robot -- ")
        .trim_end_matches('&')
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let args: Vec<String> = args
        .into_iter()
        .map(|arg| arg.replace("127.0.0.1:4000", &format!("127.0.0.1:{port}")))
        .collect();
    assert!(args.iter().any(|arg| arg == "--reconnect"), "{args:?}");
    let mut child = robot_command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(child.try_wait().unwrap().is_none(), "the robot gave up");
    let server = FakeServer::start_on(port).await;
    let mut peer = server.accept().await;
    let metadata: Value = serde_json::from_str(&peer.recv_text().await).unwrap();
    assert_eq!(
        metadata["value"]["robotAddress"], "001AFFDB45C2",
        "{metadata}"
    );
    child.kill().unwrap();
    let _ = child.wait();
}
