#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use rpa_protocol::{
    Dialect, JobReport, Metadata, ReportStatus, RobotFrame, RobotMessage, ServerMessage,
};
use rpa_robot::{Event, Robot, RobotConfig, RobotError};
use serde_json::json;
use support::{FakeServer, PATIENCE, Peer, notification, package, registered};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::StatusCode;

const NAME: &str = "PC-1";
const ADDRESS: &str = "001AFFDB45C2";

fn config(server: &FakeServer) -> RobotConfig {
    RobotConfig::new(server.url("/"), NAME, ADDRESS)
}

fn field(server: &FakeServer, dialect: Dialect) -> RobotConfig {
    let mut config = config(server);
    config.extended = false;
    config.dialect = dialect;
    config
}

/// Connects a robot; an extended one is registered as `conn-1`. Returns the metadata text.
async fn connect(server: &FakeServer, config: RobotConfig) -> (Robot, Peer, String) {
    let dialect = config.dialect;
    let extended = config.extended;
    let (robot, (peer, metadata)) = tokio::join!(Robot::connect(config), async {
        let mut peer = server.accept().await;
        let metadata = peer.recv_text().await;
        if extended {
            peer.register("conn-1", dialect).await;
        }
        (peer, metadata)
    });
    (robot.unwrap(), peer, metadata)
}

async fn next(robot: &mut Robot) -> Event {
    tokio::time::timeout(PATIENCE, robot.next_event())
        .await
        .expect("no event")
        .unwrap()
}

fn expected_package(job_id: i64, name: &str) -> Event {
    Event::Package {
        job_id,
        package: package(name),
    }
}

#[tokio::test]
async fn extended_underscore_metadata_with_user_id() {
    let server = FakeServer::start().await;
    let mut config = config(&server);
    config.user = Some(json!(4));
    let (robot, peer, metadata) = connect(&server, config).await;
    assert_eq!(
        metadata,
        r#"{"_event":"client robot metaData","value":{"robotName":"PC-1","robotAddress":"001AFFDB45C2","userID":4,"protocol":2}}"#
    );
    assert_eq!(robot.connection_id(), Some("conn-1"));
    assert_eq!(peer.path, "/");
    assert_eq!(peer.authorization, None);
    assert!(robot.config().extended);
}

#[tokio::test]
async fn field_plain_metadata_with_uuid() {
    let server = FakeServer::start().await;
    let mut config = field(&server, Dialect::Plain);
    config.url = server.url("/api/robots/connect");
    config.user = Some(json!("5b1c0e36-3b0c-4d3a-9f4e-1d2c3b4a5f60"));
    let (robot, mut peer, metadata) = connect(&server, config).await;
    assert_eq!(
        metadata,
        r#"{"event":"client robot metaData","value":{"robotName":"PC-1","robotAddress":"001AFFDB45C2","uuid":"5b1c0e36-3b0c-4d3a-9f4e-1d2c3b4a5f60"}}"#
    );
    assert_eq!(robot.connection_id(), None);
    assert_eq!(peer.path, "/api/robots/connect");
    peer.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn field_underscore_metadata_without_user() {
    let server = FakeServer::start().await;
    let (_robot, _peer, metadata) = connect(&server, field(&server, Dialect::Underscore)).await;
    assert_eq!(
        metadata,
        r#"{"_event":"client robot metaData","value":{"robotName":"PC-1","robotAddress":"001AFFDB45C2"}}"#
    );
}

#[tokio::test]
async fn metadata_as_string_in_both_dialects() {
    for (dialect, extended) in [(Dialect::Underscore, true), (Dialect::Plain, false)] {
        let server = FakeServer::start().await;
        let mut config = field(&server, dialect);
        config.extended = extended;
        config.metadata_as_string = true;
        config.user = Some(json!(4));
        let (_robot, _peer, text) = connect(&server, config).await;
        let protocol = if extended { r#",\"protocol\":2"# } else { "" };
        assert_eq!(
            text,
            format!(
                r#"{{"{}":"client robot metaData","value":"{{\"robotName\":\"PC-1\",\"robotAddress\":\"001AFFDB45C2\",\"userID\":4{protocol}}}"}}"#,
                dialect.key()
            )
        );
        let frame = rpa_protocol::parse_robot_frame(&text).unwrap();
        assert_eq!(frame.dialect, dialect);
        let RobotMessage::MetaData(value) = frame.message else {
            panic!("not metadata");
        };
        assert!(value.is_string());
        let metadata = Metadata::from_value(&value).unwrap();
        assert_eq!(metadata.robot_name, NAME);
        assert_eq!(metadata.user_id, Some(json!(4)));
        assert_eq!(metadata.is_extended(), extended);
    }
}

#[tokio::test]
async fn token_is_a_bearer_header() {
    let server = FakeServer::start().await;
    let mut config = config(&server);
    config.url = server.url("/ws");
    config.token = Some("s3cret".to_owned());
    let (_robot, peer, _) = connect(&server, config).await;
    assert_eq!(peer.path, "/ws");
    assert_eq!(peer.authorization.as_deref(), Some("Bearer s3cret"));
}

#[tokio::test]
async fn a_token_that_is_not_a_header_value_is_a_config_error() {
    let server = FakeServer::start().await;
    let mut config = config(&server);
    config.token = Some("line\nbreak".to_owned());
    let error = Robot::connect(config).await.unwrap_err();
    assert!(matches!(error, RobotError::Config(_)), "{error:?}");
}

#[tokio::test]
async fn a_refused_upgrade_tells_its_status() {
    let server = FakeServer::start().await;
    let (result, ()) = tokio::join!(
        Robot::connect(config(&server)),
        server.refuse(StatusCode::UNAUTHORIZED)
    );
    let error = result.unwrap_err();
    assert!(matches!(error, RobotError::Connect(_)), "{error:?}");
    assert_eq!(error.http_status(), Some(401));
}

#[tokio::test]
async fn nobody_listening_is_a_connect_error() {
    let port = {
        let server = FakeServer::start().await;
        server.url("/")
    };
    let error = Robot::connect(RobotConfig::new(port, NAME, ADDRESS))
        .await
        .unwrap_err();
    assert!(matches!(error, RobotError::Connect(_)), "{error:?}");
    assert_eq!(error.http_status(), None);
}

#[tokio::test]
async fn packages_in_either_value_form_are_split_and_acknowledged() {
    for dialect in [Dialect::Underscore, Dialect::Plain] {
        let server = FakeServer::start().await;
        let mut config = config(&server);
        config.dialect = dialect;
        let (mut robot, mut peer, _) = connect(&server, config).await;
        // The server's own encoding for the dialect, then the other value form.
        for (job_id, form) in [(7, dialect), (8, other(dialect))] {
            let text = notification(job_id, "pkg").encode(form);
            peer.send_text(&text).await;
            assert_eq!(next(&mut robot).await, expected_package(job_id, "pkg"));
            assert_eq!(robot.last_frame(), Some(text.as_str()));
            let ack = peer.recv_text().await;
            assert_eq!(
                ack,
                format!(
                    r#"{{"{}":"Ack pkg reception","value":{{"job_id":{job_id}}}}}"#,
                    dialect.key()
                )
            );
            assert_eq!(
                rpa_protocol::parse_robot_frame(&ack).unwrap(),
                RobotFrame::new(dialect, RobotMessage::Ack { job_id })
            );
        }
    }
}

fn other(dialect: Dialect) -> Dialect {
    match dialect {
        Dialect::Underscore => Dialect::Plain,
        Dialect::Plain => Dialect::Underscore,
    }
}

#[tokio::test]
async fn a_field_robot_never_acknowledges() {
    let server = FakeServer::start().await;
    let (mut robot, mut peer, _) = connect(&server, field(&server, Dialect::Underscore)).await;
    peer.send(&notification(3, "pkg"), Dialect::Underscore)
        .await;
    assert_eq!(next(&mut robot).await, expected_package(3, "pkg"));
    robot.send_message(json!("after")).await.unwrap();
    assert_eq!(
        peer.recv_frame().await.message,
        RobotMessage::Message(json!("after"))
    );
}

#[tokio::test]
async fn without_auto_ack_the_caller_acknowledges() {
    let server = FakeServer::start().await;
    let mut config = config(&server);
    config.auto_ack = false;
    let (mut robot, mut peer, _) = connect(&server, config).await;
    peer.send(&notification(9, "pkg"), Dialect::Underscore)
        .await;
    assert_eq!(next(&mut robot).await, expected_package(9, "pkg"));
    peer.expect_silence(Duration::from_millis(100)).await;
    robot.ack(9).await.unwrap();
    assert_eq!(
        peer.recv_text().await,
        r#"{"_event":"Ack pkg reception","value":{"job_id":9}}"#
    );
}

#[tokio::test]
async fn reports_declines_messages_and_raw_text() {
    let server = FakeServer::start().await;
    let mut config = field(&server, Dialect::Underscore);
    config.user = Some(json!("u-1"));
    let (mut robot, mut peer, metadata) = connect(&server, config).await;

    robot.report(7, true, None).await.unwrap();
    assert_eq!(
        peer.recv_text().await,
        r#"{"_event":"client robot message","value":{"job_id":7,"status":"success"}}"#
    );
    robot.report(8, false, Some("no disk")).await.unwrap();
    let RobotMessage::Message(value) = peer.recv_frame().await.message else {
        panic!("not a message");
    };
    assert_eq!(
        JobReport::from_value(&value),
        Some(JobReport {
            job_id: 8,
            status: ReportStatus::Failure,
            message: Some("no disk".to_owned()),
        })
    );

    robot.decline("pkg").await.unwrap();
    assert_eq!(
        peer.recv_text().await,
        r#"{"_event":"Decline pkg reception","value":"pkg"}"#
    );
    robot.decline("").await.unwrap();
    assert_eq!(
        peer.recv_text().await,
        r#"{"_event":"Decline pkg reception","value":""}"#
    );

    robot.send_message(json!("hello")).await.unwrap();
    assert_eq!(
        peer.recv_text().await,
        r#"{"_event":"client robot message","value":"hello"}"#
    );
    robot.send_text("not json {").await.unwrap();
    assert_eq!(peer.recv_text().await, "not json {");
    robot.resend_metadata().await.unwrap();
    assert_eq!(peer.recv_text().await, metadata);
}

#[tokio::test]
async fn plain_robots_write_plain_frames() {
    let server = FakeServer::start().await;
    let (mut robot, mut peer, _) = connect(&server, field(&server, Dialect::Plain)).await;
    robot.report(1, true, Some("ok")).await.unwrap();
    assert_eq!(
        peer.recv_text().await,
        r#"{"event":"client robot message","value":{"job_id":1,"status":"success","message":"ok"}}"#
    );
    robot.decline("p").await.unwrap();
    assert_eq!(
        peer.recv_text().await,
        r#"{"event":"Decline pkg reception","value":"p"}"#
    );
}

#[tokio::test]
async fn server_messages_become_events() {
    let server = FakeServer::start().await;
    let (mut robot, mut peer, metadata) = connect(&server, config(&server)).await;

    peer.send(&ServerMessage::DeclineMetaData, Dialect::Underscore)
        .await;
    assert_eq!(next(&mut robot).await, Event::MetadataDeclined);

    robot.resend_metadata().await.unwrap();
    assert_eq!(peer.recv_text().await, metadata);
    peer.send(&registered("conn-2"), Dialect::Underscore).await;
    assert_eq!(
        next(&mut robot).await,
        Event::Registered {
            connection_id: "conn-2".to_owned(),
            ping_interval_ms: 10_000,
            ack_timeout_ms: 30_000,
        }
    );
    assert_eq!(robot.connection_id(), Some("conn-2"));

    let error = ServerMessage::Error {
        code: "not_json".to_owned(),
        message: "frame is not valid JSON".to_owned(),
    };
    peer.send(&error, Dialect::Underscore).await;
    assert_eq!(
        next(&mut robot).await,
        Event::ServerError {
            code: "not_json".to_owned(),
            message: "frame is not valid JSON".to_owned(),
        }
    );
}

#[tokio::test]
async fn a_close_frame_is_closed_with_its_code() {
    let server = FakeServer::start().await;
    let (mut robot, mut peer, _) = connect(&server, config(&server)).await;
    peer.close(4000, "replaced by a newer connection").await;
    assert_eq!(
        next(&mut robot).await,
        Event::Closed {
            code: Some(4000),
            reason: "replaced by a newer connection".to_owned(),
        }
    );
    // The robot answered the close.
    assert!(matches!(peer.recv().await, Message::Close(_)));
    assert!(robot.is_closed());
    assert!(matches!(robot.next_event().await, Err(RobotError::Closed)));
    assert!(matches!(
        robot.report(1, true, None).await,
        Err(RobotError::Closed)
    ));
    robot.close().await.unwrap();
}

#[tokio::test]
async fn a_dropped_connection_is_closed_without_code() {
    let server = FakeServer::start().await;
    let (mut robot, peer, _) = connect(&server, config(&server)).await;
    drop(peer);
    let Event::Closed { code, .. } = next(&mut robot).await else {
        panic!("not closed");
    };
    assert_eq!(code, None);
    assert!(matches!(robot.next_event().await, Err(RobotError::Closed)));
}

#[tokio::test]
async fn close_sends_a_normal_close_and_waits_for_the_answer() {
    let server = FakeServer::start().await;
    let (robot, mut peer, _) = connect(&server, config(&server)).await;
    let (closed, frame) = tokio::join!(robot.close(), async {
        let frame = peer.recv().await;
        // Reading on lets tungstenite send the close reply.
        let _ = tokio::time::timeout(PATIENCE, futures_util::StreamExt::next(&mut peer.ws)).await;
        frame
    });
    closed.unwrap();
    let Message::Close(Some(frame)) = frame else {
        panic!("not a close frame: {frame:?}");
    };
    assert_eq!(u16::from(frame.code), 1000);
}

#[tokio::test]
async fn close_times_out_when_the_server_does_not_answer() {
    let server = FakeServer::start().await;
    let (robot, _peer, _) = connect(&server, field(&server, Dialect::Underscore)).await;
    // Nobody reads on the server side, so no close reply comes.
    assert!(matches!(robot.close().await, Err(RobotError::Timeout)));
}

#[tokio::test]
async fn duplicates_are_returned_and_flagged() {
    let server = FakeServer::start().await;
    let (mut robot, mut peer, _) = connect(&server, config(&server)).await;
    peer.send(&notification(7, "a"), Dialect::Underscore).await;
    assert_eq!(next(&mut robot).await, expected_package(7, "a"));
    assert!(!robot.is_duplicate(7));
    peer.send(&notification(8, "b"), Dialect::Underscore).await;
    assert_eq!(next(&mut robot).await, expected_package(8, "b"));
    peer.send(&notification(7, "a"), Dialect::Underscore).await;
    assert_eq!(next(&mut robot).await, expected_package(7, "a"));
    assert!(robot.is_duplicate(7));
    assert!(!robot.is_duplicate(8));
    assert!(!robot.is_duplicate(9));
    // Every arrival was acknowledged, the duplicate too.
    for job_id in [7, 8, 7] {
        assert_eq!(
            peer.recv_frame().await.message,
            RobotMessage::Ack { job_id }
        );
    }

    // A declined package comes back, and that is not a duplicate.
    robot.decline("b").await.unwrap();
    peer.recv_frame().await;
    peer.send(&notification(8, "b"), Dialect::Underscore).await;
    assert_eq!(next(&mut robot).await, expected_package(8, "b"));
    assert!(!robot.is_duplicate(8));
}

#[tokio::test]
async fn silence_is_none_and_pings_are_counted_not_returned() {
    let server = FakeServer::start().await;
    let (mut robot, mut peer, _) = connect(&server, config(&server)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        robot
            .next_event_timeout(Duration::from_millis(100))
            .await
            .unwrap(),
        None
    );
    assert!(started.elapsed() >= Duration::from_millis(100));

    peer.send_raw(Message::Ping("a".into())).await;
    peer.send_raw(Message::Ping("b".into())).await;
    peer.send(&notification(5, "pkg"), Dialect::Underscore)
        .await;
    assert_eq!(
        robot.next_event_timeout(PATIENCE).await.unwrap(),
        Some(expected_package(5, "pkg"))
    );
    assert_eq!(robot.pings(), 2);
    // Both pings were answered before the acknowledgement.
    assert!(matches!(peer.recv_raw().await, Message::Pong(payload) if payload == "a"));
    assert!(matches!(peer.recv_raw().await, Message::Pong(payload) if payload == "b"));
    assert_eq!(
        peer.recv_frame().await.message,
        RobotMessage::Ack { job_id: 5 }
    );
}

#[tokio::test]
async fn unreadable_frames_are_protocol_errors_and_the_robot_goes_on() {
    let server = FakeServer::start().await;
    let (mut robot, mut peer, _) = connect(&server, config(&server)).await;
    for text in [
        "not json",
        "[1,2]",
        r#"{"_event":"notification","value":{"package_name":"p"}}"#,
        r#"{"_event":"notification","value":"{not json"}"#,
        r#"{"_event":"surprise","value":1}"#,
        r#"{"value":1}"#,
    ] {
        peer.send_text(text).await;
        let error = robot.next_event().await.unwrap_err();
        assert!(
            matches!(error, RobotError::Protocol(_)),
            "{text}: {error:?}"
        );
        assert_eq!(robot.last_frame(), Some(text));
    }
    peer.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert!(matches!(
        robot.next_event().await,
        Err(RobotError::Protocol(_))
    ));
    peer.send(&notification(1, "pkg"), Dialect::Underscore)
        .await;
    assert_eq!(next(&mut robot).await, expected_package(1, "pkg"));
}

#[tokio::test]
async fn packages_before_registered_are_kept() {
    let server = FakeServer::start().await;
    let (robot, mut peer) = tokio::join!(Robot::connect(config(&server)), async {
        let mut peer = server.accept().await;
        peer.recv_text().await;
        peer.send(&notification(4, "early"), Dialect::Underscore)
            .await;
        peer.register("conn-1", Dialect::Underscore).await;
        peer
    });
    let mut robot = robot.unwrap();
    assert_eq!(robot.connection_id(), Some("conn-1"));
    assert_eq!(next(&mut robot).await, expected_package(4, "early"));
    assert_eq!(
        peer.recv_frame().await.message,
        RobotMessage::Ack { job_id: 4 }
    );
}

/// Runs an extended robot's connect against a server that answers the metadata with `answer`.
async fn connect_answered(answer: Option<ServerMessage>, close: Option<u16>) -> RobotError {
    let server = FakeServer::start().await;
    let (result, _peer) = tokio::join!(Robot::connect(config(&server)), async {
        let mut peer = server.accept().await;
        peer.recv_text().await;
        if let Some(answer) = &answer {
            peer.send(answer, Dialect::Underscore).await;
        }
        if let Some(code) = close {
            peer.close(code, "go away").await;
        }
        peer
    });
    result.unwrap_err()
}

#[tokio::test]
async fn an_extended_connect_fails_when_the_server_does_not_register() {
    let error = connect_answered(Some(ServerMessage::DeclineMetaData), None).await;
    assert!(matches!(error, RobotError::MetadataDeclined), "{error:?}");

    let refusal = ServerMessage::Error {
        code: "bad_value".to_owned(),
        message: "no".to_owned(),
    };
    let error = connect_answered(Some(refusal), None).await;
    assert!(
        matches!(&error, RobotError::Refused { code, .. } if code == "bad_value"),
        "{error:?}"
    );

    let error = connect_answered(None, Some(1008)).await;
    assert!(
        matches!(
            &error,
            RobotError::ClosedBeforeRegistration { code: Some(1008), reason } if reason == "go away"
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn reconnect_keeps_the_duplicate_history() {
    let server = FakeServer::start().await;
    let (mut robot, mut peer, metadata) = connect(&server, config(&server)).await;
    peer.send(&notification(7, "pkg"), Dialect::Underscore)
        .await;
    assert_eq!(next(&mut robot).await, expected_package(7, "pkg"));
    drop(peer);
    assert!(matches!(next(&mut robot).await, Event::Closed { .. }));

    let (reconnected, mut peer) = tokio::join!(robot.reconnect(), async {
        let mut peer = server.accept().await;
        assert_eq!(peer.recv_text().await, metadata);
        peer.register("conn-2", Dialect::Underscore).await;
        peer
    });
    reconnected.unwrap();
    assert!(!robot.is_closed());
    assert_eq!(robot.connection_id(), Some("conn-2"));
    peer.send(&notification(7, "pkg"), Dialect::Underscore)
        .await;
    assert_eq!(next(&mut robot).await, expected_package(7, "pkg"));
    assert!(robot.is_duplicate(7));
    assert_eq!(
        peer.recv_frame().await.message,
        RobotMessage::Ack { job_id: 7 }
    );
}
