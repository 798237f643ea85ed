#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Hostile input (issue 5, quality.md): whatever a network sends, the server answers as the
//! spec says, keeps serving other robots, and its database is unchanged.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, close_code, dump, eventually, http, http_raw, metadata, next_text, send};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const ROBOT: &str = "001AFFDB45C2";

/// A WebSocket opened by hand, to send frames no well-behaved client would.
struct RawSocket {
    stream: TcpStream,
}

impl RawSocket {
    fn open(server: &Server) -> RawSocket {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawSocket { stream }
    }

    /// A frame: `first` byte (FIN, RSV, opcode), the payload masked (or not).
    fn frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        let mut bytes = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => bytes.push(mask_bit | n as u8),
            n if n < 65_536 => {
                bytes.push(mask_bit | 126);
                bytes.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                bytes.push(mask_bit | 127);
                bytes.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [0x12, 0x34, 0x56, 0x78];
        if masked {
            bytes.extend_from_slice(&key);
            bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            bytes.extend_from_slice(payload);
        }
        let _ = self.stream.write_all(&bytes);
    }

    fn text(&mut self, text: &str) {
        self.frame(0x81, text.as_bytes(), true);
    }

    /// The close code the server sends, or `None` if it just hung up.
    fn close_code(&mut self) -> Option<u16> {
        let mut buffer = [0u8; 256];
        let mut got = Vec::new();
        loop {
            match self.stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buffer[..n]),
            }
            // Skip whole frames until a close frame (0x88) shows up.
            let mut at = 0;
            while at + 2 <= got.len() {
                let opcode = got[at] & 0x0f;
                let len = usize::from(got[at + 1] & 0x7f);
                if len >= 126 || at + 2 + len > got.len() {
                    break;
                }
                if opcode == 0x8 && len >= 2 {
                    return Some(u16::from_be_bytes([got[at + 2], got[at + 3]]));
                }
                at += 2 + len;
            }
        }
        None
    }
}

impl RawSocket {
    /// Reads what the server sends until the connection ends: the code of its Close frame, and
    /// whether the connection then ended cleanly (FIN) rather than by a reset.
    fn close_and_end(&mut self) -> (Option<u16>, bool) {
        let mut got = Vec::new();
        let mut buffer = [0u8; 4096];
        let clean = loop {
            match self.stream.read(&mut buffer) {
                Ok(0) => break true,
                Ok(n) => got.extend_from_slice(&buffer[..n]),
                Err(_) => break false,
            }
        };
        let mut at = 0;
        while at + 2 <= got.len() {
            let opcode = got[at] & 0x0f;
            let len = usize::from(got[at + 1] & 0x7f);
            if len >= 126 || at + 2 + len > got.len() {
                break;
            }
            if opcode == 0x8 {
                let code = (len >= 2).then(|| u16::from_be_bytes([got[at + 2], got[at + 3]]));
                return (code, clean);
            }
            at += 2 + len;
        }
        (None, clean)
    }
}

fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Registers a robot, creates one job for it, and returns its socket: the state every hostile
/// case must leave untouched.
async fn populated() -> (Server, common::Ws) {
    let server = Server::start(&["--header-timeout", "2s"]);
    let mut ws = server.robot("R", ROBOT).await;
    let trigger = json!({
        "Package": {"package_name": "p", "path": "a/b.std"},
        "Robot": {"robot_name": "R", "robot_address": ROBOT},
        "Schedule": {"at": "2099-01-01T00:00:00Z"},
    });
    assert_eq!(server.post("/api/jobs", &trigger).await.0, 201);
    send(
        &mut ws,
        &json!({"_event": "client robot message", "value": "baseline"}),
    )
    .await;
    eventually(Duration::from_secs(5), || async {
        let (_, page) = server.get(&format!("/api/robots/{ROBOT}/messages")).await;
        (page["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    (server, ws)
}

/// The bystander robot still gets answers: a message of its is stored.
async fn still_serving(server: &Server, ws: &mut common::Ws, marker: &str) {
    send(
        ws,
        &json!({"_event": "client robot message", "value": marker}),
    )
    .await;
    eventually(Duration::from_secs(5), || async {
        let (_, page) = server.get(&format!("/api/robots/{ROBOT}/messages")).await;
        (page["items"][0]["value"] == marker).then_some(())
    })
    .await;
}

#[tokio::test]
async fn malformed_websocket_frames_close_only_their_connection_and_change_nothing() {
    let (server, mut bystander) = populated().await;
    let before = dump(&server.dir);
    type Case = (&'static str, Box<dyn Fn(&mut RawSocket)>, u16);
    let cases: [Case; 6] = [
        (
            "unmasked frame",
            Box::new(|s| s.frame(0x81, b"{}", false)),
            1002,
        ),
        (
            "reserved opcode",
            Box::new(|s| s.frame(0x83, b"{}", true)),
            1002,
        ),
        (
            "reserved bits",
            Box::new(|s| s.frame(0xC1, b"{}", true)),
            1002,
        ),
        (
            "oversized control frame",
            Box::new(|s| s.frame(0x89, &[0u8; 126], true)),
            1002,
        ),
        (
            "invalid UTF-8",
            Box::new(|s| s.frame(0x81, &[0x7b, 0xff, 0xfe, 0x7d], true)),
            1007,
        ),
        (
            "a header declaring 2^63 bytes",
            Box::new(|s| {
                let mut bytes = vec![0x81, 0x80 | 127];
                bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
                bytes.extend_from_slice(&[1, 2, 3, 4]);
                let _ = s.stream.write_all(&bytes);
            }),
            1009,
        ),
    ];
    for (name, send_it, code) in cases {
        let mut raw = RawSocket::open(&server);
        raw.text(&metadata("_event", "H", "00000000000F").to_string());
        send_it(&mut raw);
        assert_eq!(raw.close_code(), Some(code), "{name}");
        still_serving(&server, &mut bystander, name).await;
    }
    let after = dump(&server.dir);
    // Only the bystander's own markers and the hostile robot's registration were added.
    let added: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
    assert!(
        added
            .iter()
            .all(|l| l.starts_with("message") || l.contains("00000000000F")),
        "unexpected changes: {added:#?}"
    );
}

#[tokio::test]
async fn bad_frames_of_every_kind_change_no_stored_data() {
    let (server, mut bystander) = populated().await;
    let before = dump(&server.dir);
    let mut ws = server.connect("/").await;
    let frames = [
        Message::text("not json"),
        Message::text(""),
        Message::text("[]"),
        Message::text("42"),
        Message::text(r#"{"_event":"client robot message","value":"\ud800"}"#),
        Message::text(r#"{"_event":5,"value":1}"#),
        Message::text(r#"{"_event":"drop table robots","value":1}"#),
        Message::text(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))),
        Message::text(
            r#"{"_event":"client robot metaData","value":{"robotName":"x\u001b[31m","robotAddress":"A"}}"#,
        ),
        Message::text(r#"{"_event":"client robot message","value":"before registering"}"#),
        Message::text(r#"{"_event":"Decline pkg reception","value":""}"#),
        Message::text(r#"{"_event":"Ack pkg reception","value":{"job_id":1}}"#),
        Message::binary(vec![0u8; 100]),
    ];
    for frame in frames {
        ws.send(frame).await.unwrap();
    }
    // Only the declined metadata gets an answer.
    let reply = next_text(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        reply,
        r#"{"_event":"Decline metaData reception","value":" "}"#
    );
    assert_eq!(next_text(&mut ws, Duration::from_millis(300)).await, None);
    still_serving(&server, &mut bystander, "after bad frames").await;
    let after = dump(&server.dir);
    let added: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
    assert!(
        added.iter().all(|l| l.contains("after bad frames")),
        "{added:#?}"
    );
}

#[tokio::test]
async fn abusive_handshakes_are_refused_and_the_server_keeps_serving() {
    let (server, mut bystander) = populated().await;
    // 2,000 headers.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request =
        String::from("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    for n in 0..2000 {
        request.push_str(&format!("X-Header-{n}: {n}\r\n"));
    }
    request.push_str("\r\n");
    let _ = stream.write_all(request.as_bytes());
    let head = read_head(&mut stream);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 431"),
        "{head}"
    );
    // One byte a second: cut off at the header timeout (2 s here).
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\n".iter().cycle().take(30) {
        if slow.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        let mut probe = [0u8; 64];
        slow.set_nonblocking(true).unwrap();
        let read = slow.read(&mut probe);
        slow.set_nonblocking(false).unwrap();
        if matches!(read, Ok(0)) || matches!(read, Ok(n) if n > 0) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a slow handshake was not cut off");
    assert!(started.elapsed() < Duration::from_secs(6));
    // A wrong WebSocket version and a missing key are plain errors.
    let (status, _, _) = http_raw(
        server.addr,
        "GET",
        "/ws",
        None,
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "x"),
        ],
    )
    .await;
    assert_eq!(status, 426);
    let (status, _, _) = http_raw(
        server.addr,
        "GET",
        "/ws",
        None,
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    still_serving(&server, &mut bystander, "after handshakes").await;
}

#[tokio::test]
async fn a_robot_sending_too_fast_is_read_slower_then_cut_off_with_1008() {
    let server = Server::start(&["--robot-rate", "5", "--robot-burst", "20"]);
    let mut ws = server.robot("R", ROBOT).await;
    let started = std::time::Instant::now();
    for n in 0..200 {
        let frame = json!({"_event": "client robot message", "value": n}).to_string();
        if ws.send(Message::text(frame)).await.is_err() {
            break;
        }
    }
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(15)).await,
        Some(1008)
    );
    let lasted = started.elapsed();
    assert!(lasted >= Duration::from_secs(5), "closed after {lasted:?}");
    // Read at the rate, nothing dropped: the burst, then about five a second, in order.
    let (_, page) = server
        .get(&format!("/api/robots/{ROBOT}/messages?limit=500"))
        .await;
    let values: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|m| m["value"].as_i64().unwrap())
        .collect();
    assert!(
        values.len() >= 40 && values.len() <= 60,
        "{} stored",
        values.len()
    );
    assert_eq!(
        values,
        (0..values.len() as i64).collect::<Vec<_>>(),
        "in order, none skipped"
    );
}

#[tokio::test]
async fn a_burst_within_the_rate_loses_nothing() {
    let server = Server::start(&["--robot-rate", "20", "--robot-burst", "100"]);
    let mut ws = server.robot("R", ROBOT).await;
    for n in 0..150 {
        let frame = json!({"_event": "client robot message", "value": n}).to_string();
        ws.send(Message::text(frame)).await.unwrap();
    }
    eventually(Duration::from_secs(10), || async {
        let (_, page) = server
            .get(&format!("/api/robots/{ROBOT}/messages?limit=500"))
            .await;
        (page["items"].as_array()?.len() == 150).then_some(())
    })
    .await;
    server.wait_online(ROBOT, true).await;
}

#[tokio::test]
async fn connections_per_address_are_bounded() {
    let server = Server::start(&["--max-connections-per-ip", "3"]);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(server.connect("/").await);
    }
    let refused = tokio_tungstenite::connect_async(server.ws_url("/")).await;
    assert!(refused.is_err(), "a fourth connection from one address");
    drop(open.pop());
    eventually(Duration::from_secs(5), || async {
        tokio_tungstenite::connect_async(server.ws_url("/"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn the_api_needs_a_token_when_one_is_set_and_tokens_never_reach_the_log() {
    let server = Server::start(&["--api-token", "first-secret-1,second-secret-2"]);
    let (status, headers, body) = http_raw(server.addr, "GET", "/api/robots", None, &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let (status, _) = http(
        server.addr,
        "GET",
        "/api/robots",
        None,
        &[("authorization", "Bearer guessed-wrong")],
    )
    .await;
    assert_eq!(status, 401);
    for token in ["first-secret-1", "second-secret-2"] {
        let header = format!("Bearer {token}");
        let (status, _) = http(
            server.addr,
            "GET",
            "/api/robots",
            None,
            &[("authorization", &header)],
        )
        .await;
        assert_eq!(status, 200, "{token}");
    }
    for route in ["/jobs/cancel/1/", "/jobs/force/1", "/api/jobs/cancel/1"] {
        assert_eq!(server.get(route).await.0, 401, "{route}");
    }
    for (route, body) in [
        ("/pkg", "{}"),
        ("/robots/package", "{}"),
        ("/api/jobs", "{}"),
    ] {
        assert_eq!(
            http(server.addr, "POST", route, Some(body), &[]).await.0,
            401,
            "{route}"
        );
    }
    assert_eq!(server.get("/healthz").await.0, 200);
    assert_eq!(server.get("/metrics").await.0, 200);
    let log = server.log();
    assert!(!log.contains("secret"), "a token reached the log");
}

#[tokio::test]
async fn robots_need_their_token_before_the_upgrade_when_one_is_set() {
    let server = Server::start(&["--robot-token", "robot-secret-9"]);
    let refused = tokio_tungstenite::connect_async(server.ws_url("/")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected a 401 before the upgrade, got {other:?}"),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/?token=robot-secret-9"))
        .await
        .unwrap();
    send(&mut ws, &metadata("_event", "R", ROBOT)).await;
    server.wait_online(ROBOT, true).await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.ws_url("/ws"),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer robot-secret-9".parse().unwrap());
    let (mut second, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(&mut second, &metadata("event", "S", "00000000000B")).await;
    server.wait_online("00000000000B", true).await;
    assert!(
        !server.log().contains("robot-secret-9"),
        "a token reached the log"
    );
}

#[tokio::test]
async fn browsers_from_other_origins_are_refused_when_origins_are_listed() {
    let server = Server::start(&["--allowed-origins", "https://studio.example"]);
    let (status, _) = http(
        server.addr,
        "GET",
        "/api/robots",
        None,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, headers, _) = http_raw(
        server.addr,
        "GET",
        "/api/robots",
        None,
        &[("origin", "https://studio.example")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://studio.example"
    );
    let (status, headers, _) = http_raw(
        server.addr,
        "OPTIONS",
        "/api/jobs",
        None,
        &[
            ("origin", "https://studio.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.ws_url("/"),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    // Robots send no Origin: not browsers, not refused.
    let _ws = server.robot("R", ROBOT).await;
}

#[tokio::test]
async fn a_close_is_answered_with_a_close_echoing_its_code_before_the_connection_ends() {
    let (server, mut bystander) = populated().await;
    let with_code = |code: u16, reason: &[u8]| {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        payload
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a private code with a reason",
            with_code(4001, b"bye"),
            4001,
        ),
        ("normal", with_code(1000, b""), 1000),
        ("going away", with_code(1001, b"shutting down"), 1001),
        ("IANA-assigned 1014", with_code(1014, b""), 1014),
        ("no code at all", Vec::new(), 1000),
        ("below 1000", with_code(999, b""), 1002),
        ("reserved 1004", with_code(1004, b""), 1002),
        ("1005 on the wire", with_code(1005, b""), 1002),
        ("1006 on the wire", with_code(1006, b""), 1002),
        ("1015 on the wire", with_code(1015, b""), 1002),
        ("unassigned 2999", with_code(2999, b""), 1002),
        ("5000 and above", with_code(5000, b""), 1002),
        (
            "a reason that is not UTF-8",
            with_code(1000, &[0xff, 0xfe]),
            1002,
        ),
    ];
    for (name, payload, expected) in cases {
        let mut raw = RawSocket::open(&server);
        raw.text(&metadata("_event", "H", "00000000000F").to_string());
        raw.frame(0x88, &payload, true);
        let (code, clean) = raw.close_and_end();
        assert_eq!(code, Some(expected), "{name}");
        assert!(clean, "{name}: the connection was reset after the Close");
        still_serving(&server, &mut bystander, name).await;
    }
    // A robot that closes before it registered gets its answer too.
    let mut raw = RawSocket::open(&server);
    raw.frame(0x88, &with_code(1000, b""), true);
    assert_eq!(raw.close_and_end(), (Some(1000), true));
}

#[tokio::test]
async fn a_1009_reaches_a_robot_that_goes_on_sending() {
    let (server, mut bystander) = populated().await;
    for size in [70_000usize, 1_000_000] {
        let mut raw = RawSocket::open(&server);
        raw.text(&metadata("_event", "H", "00000000000F").to_string());
        // The whole oversized message is on its way, and more behind it, before the server
        // reads its header: the server must not drop the socket with unread bytes (a reset
        // would destroy the Close it sent).
        let mut writer = raw.stream.try_clone().unwrap();
        let sending = std::thread::spawn(move || {
            let header = [0x81, 0x80 | 127];
            let _ = writer.write_all(&header);
            let _ = writer.write_all(&(size as u64).to_be_bytes());
            let _ = writer.write_all(&[1, 2, 3, 4]);
            let _ = writer.write_all(&vec![b'a'; size]);
        });
        let (code, clean) = raw.close_and_end();
        assert_eq!(code, Some(1009), "{size} bytes");
        assert!(clean, "{size} bytes: the connection was reset");
        sending.join().unwrap();
        still_serving(&server, &mut bystander, &format!("after {size}")).await;
    }
}

#[tokio::test]
async fn pings_count_against_the_robots_rate() {
    let server = Server::start(&["--robot-rate", "5", "--robot-burst", "20"]);
    let mut ws = server.robot("R", ROBOT).await;
    let started = std::time::Instant::now();
    for n in 0u32..200 {
        if ws
            .send(Message::Ping(n.to_be_bytes().to_vec().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(15)).await,
        Some(1008),
        "a flood of pings is cut off like a flood of messages"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    // Pings within the rate are answered and cost nothing.
    let mut calm = server.robot("S", "00000000000C").await;
    for n in 0u32..10 {
        calm.send(Message::Ping(n.to_be_bytes().to_vec().into()))
            .await
            .unwrap();
    }
    let mut pongs = 0;
    while pongs < 10 {
        match tokio::time::timeout(Duration::from_secs(5), calm.next()).await {
            Ok(Some(Ok(Message::Pong(_)))) => pongs += 1,
            Ok(Some(Ok(Message::Ping(_)))) => {}
            other => panic!("after {pongs} pongs: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_connection_without_valid_metadata_is_closed_after_the_metadata_timeout() {
    let server = Server::start(&["--metadata-timeout", "1s"]);
    let started = std::time::Instant::now();
    let mut silent = server.connect("/").await;
    let mut declined = server.connect("/").await;
    send(
        &mut declined,
        &json!({"_event": "client robot metaData", "value": {"robotName": "x"}}),
    )
    .await;
    let registered = server.robot("R", ROBOT).await;
    for ws in [&mut silent, &mut declined] {
        assert_eq!(close_code(ws, Duration::from_secs(5)).await, Some(1008));
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "closed after {waited:?}");
    // The robot that registered in time stays.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.wait_online(ROBOT, true).await;
    drop(registered);
}
