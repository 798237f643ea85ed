#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Hostile input, bounded as a whole (issue 16, quality.md): what clients can hold across all
//! connections (bodies in flight, the time a body takes, connections, stored messages), the
//! log lines they can cause, and one server per SQLite database.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, dump, eventually, send};
use futures_util::SinkExt as _;
use serde_json::json;

const ROBOT: &str = "001AFFDB45C2";

/// A TCP connection that sends `head` (and whatever else the test writes to it).
fn open(addr: SocketAddr, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Everything the server sends until it closes the connection (or the read times out).
fn read_all(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        got.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn post_head(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_its_connection_is_closed() {
    let server = Server::start(&["--body-timeout", "1s"]);
    let mut slow = open(server.addr, &post_head("/api/jobs", 100));
    slow.write_all(b"{\"Package\":").unwrap();
    let started = Instant::now();
    let answer = read_all(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"));
    // read_all returned: the server closed the connection, and did so at the timeout.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Nothing was stored, and the server serves on.
    assert_eq!(server.get("/api/jobs").await.1["items"], json!([]));
}

#[tokio::test]
async fn bodies_in_flight_are_bounded_across_connections_with_503() {
    let server = Server::start(&[
        "--max-body",
        "4KiB",
        "--max-inflight-body",
        "8KiB",
        "--body-timeout",
        "20s",
    ]);
    // Two bodies declared at 4 KiB each, arriving slowly, fill the budget.
    let mut holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = open(server.addr, &post_head("/api/jobs", 4096));
            stream.write_all(b"{").unwrap();
            stream
        })
        .collect();
    // Let the server read both heads.
    std::thread::sleep(Duration::from_millis(300));
    let mut third = open(server.addr, &post_head("/pkg", 2048));
    let answer = read_all(&mut third);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("too_many_bodies"), "{answer}");
    // A chunked body is charged as it arrives: refused once it passes what is left.
    drop(holders.pop());
    let mut chunked = open(
        server.addr,
        "POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
    );
    let chunk = format!("1000\r\n{}\r\n", " ".repeat(4096));
    // The dropped holder's 4 KiB come back once the server notices; then 4 KiB fit, 8 do not.
    let _ = chunked.write_all(chunk.as_bytes());
    let _ = chunked.write_all(chunk.as_bytes());
    let answer = read_all(&mut chunked);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Small requests without a body are never refused, and bodies pass again once the
    // holders are gone.
    assert_eq!(server.get("/healthz").await.0, 200);
    drop(holders);
    eventually(Duration::from_secs(5), || async {
        let (status, _) = server.post("/api/jobs", &json!({})).await;
        (status == 422).then_some(())
    })
    .await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_accepted_and_closed_at_once() {
    let server = Server::start(&["--max-connections", "4"]);
    let held: Vec<TcpStream> = (0..4).map(|_| open(server.addr, "")).collect();
    // Give the server time to count them.
    std::thread::sleep(Duration::from_millis(300));
    let mut fifth = open(server.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let started = Instant::now();
    let answer = read_all(&mut fifth);
    assert_eq!(answer, "", "the fifth connection was served");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(held);
    eventually(Duration::from_secs(5), || async {
        let mut again = open(
            server.addr,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        read_all(&mut again)
            .starts_with("HTTP/1.1 200")
            .then_some(())
    })
    .await;
    assert!(server.log().contains("(--max-connections)"));
}

#[tokio::test]
async fn a_robot_keeps_its_newest_messages_and_the_oldest_go_first() {
    let server = Server::start(&["--max-messages-per-robot", "5"]);
    let mut ws = server.robot("R", ROBOT).await;
    for n in 0..12 {
        send(
            &mut ws,
            &json!({"_event": "client robot message", "value": n}),
        )
        .await;
    }
    let path = format!("/api/robots/{ROBOT}/messages?limit=100");
    let values = eventually(Duration::from_secs(5), || async {
        let (_, page) = server.get(&path).await;
        let values: Vec<i64> = page["items"]
            .as_array()?
            .iter()
            .filter_map(|m| m["value"].as_i64())
            .collect();
        (values.first() == Some(&11)).then_some(values)
    })
    .await;
    assert_eq!(values, [11, 10, 9, 8, 7]);
}

#[tokio::test]
async fn repeated_warnings_are_a_few_lines_a_second_with_a_count_of_the_rest() {
    let server = Server::start(&[
        "--api-token",
        "the-token-1",
        "--bad-frame-limit",
        "1000",
        "--robot-rate",
        "1000",
        "--robot-burst",
        "1000",
    ]);
    let started = Instant::now();
    for _ in 0..150 {
        assert_eq!(server.get("/api/robots").await.0, 401);
    }
    let mut ws = server.connect("/").await;
    for _ in 0..150 {
        ws.send(tokio_tungstenite::tungstenite::Message::text("not json"))
            .await
            .unwrap();
    }
    let seconds = started.elapsed().as_secs() + 2;
    // A second later, the next line of each kind tells how many were left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(server.get("/api/robots").await.0, 401);
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        "still not json",
    ))
    .await
    .unwrap();
    let log = eventually(Duration::from_secs(5), || async {
        let log = server.log();
        (log.contains("still not json")).then_some(log)
    })
    .await;
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("refused: 401")).collect();
    let bad: Vec<&str> = log.lines().filter(|l| l.contains("bad frame (")).collect();
    let bound = (5 * seconds + 5) as usize;
    assert!(refused.len() <= bound, "{} lines of 401s", refused.len());
    assert!(bad.len() <= bound, "{} lines of bad frames", bad.len());
    for lines in [&refused, &bad] {
        assert!(
            lines.iter().any(|l| l.contains("similar lines left out")),
            "{lines:#?}"
        );
    }
}

/// `socket-server ARGS` in `dir`, without the test harness's defaults: (exit code, stderr).
fn run_once(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .current_dir(dir)
        .args(args)
        .env_remove("PORT")
        .env_remove("DATABASE_URL")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_second_server_on_the_same_database_stops_naming_the_holder_and_changes_nothing() {
    if std::env::var_os("RPA_TEST_POSTGRES").is_some() {
        return; // PostgreSQL: several instances on one database is the point.
    }
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    let before = dump(&server.dir);
    // On another port, and on the port the first one holds.
    let other_port = ["--listen", "127.0.0.1:0"];
    let same_port = format!("{}", server.addr);
    for args in [&other_port[..], &["--listen", same_port.as_str()][..]] {
        let (code, stderr) = run_once(&server.dir, args);
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        if args[1] == same_port {
            assert!(stderr.starts_with("socket-server: --listen: "), "{stderr}");
        } else {
            assert!(
                stderr.starts_with("socket-server: --database: "),
                "{stderr}"
            );
            assert!(stderr.contains("in use by another server"), "{stderr}");
            assert!(
                stderr.contains(&format!("pid {}", server.pid())),
                "{stderr}"
            );
            assert!(stderr.contains(&server.addr.to_string()), "{stderr}");
        }
    }
    // The first one's robot is still online, in its registry and in the database.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.wait_online(ROBOT, true).await["online"], true);
    assert_eq!(dump(&server.dir), before);
}

#[tokio::test]
async fn the_healthcheck_never_opens_a_database() {
    let server = Server::start(&[]);
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, stderr) = run_once(
        elsewhere.path(),
        &[
            "--healthcheck",
            "--listen",
            &server.addr.to_string(),
            "--database",
            "sqlite://never/x.db",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!elsewhere.path().join("never").exists());
    // Nor the running server's own, whose lock it would otherwise meet.
    let (code, stderr) = run_once(
        &server.dir,
        &["--healthcheck", "--listen", &server.addr.to_string()],
    );
    assert_eq!(code, Some(0), "{stderr}");
}
