#![allow(clippy::unwrap_used, clippy::expect_used)]

//! HTTP hygiene, browsers, and what a new user meets (issue 16, quality.md and
//! operations.md): `Allow` on a 405, `HEAD`, malformed idempotency keys, cross-site requests,
//! the cost of `/metrics`, packages delivered verbatim, look-alike paths, `TZ` in the forms
//! containers set, `--listen`, failures on one line, and a closed stderr.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, http, http_raw, metric_value, metrics, next_package, send};
use rpa_testkit::{ServerCommand, ServerProcess};
use serde_json::{Value, json};

const ROBOT: &str = "001AFFDB45C2";

/// One request written as is (`Connection: close` is added): the status line and headers, and
/// the body, as text.
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &[u8])]) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

fn trigger(package: Value) -> Value {
    json!({
        "Package": package,
        "Robot": {"robot_name": "R", "robot_address": ROBOT},
        "Schedule": {"at": "2099-01-01T00:00:00Z"},
    })
}

fn package() -> Value {
    json!({"package_name": "p", "path": "a/b.std"})
}

/// A server with a registered robot and one pending job (id 1).
async fn with_a_job(args: &[&str]) -> (Server, common::Ws) {
    let server = Server::start(args);
    let ws = server.robot("R", ROBOT).await;
    assert_eq!(server.post("/api/jobs", &trigger(package())).await.0, 201);
    (server, ws)
}

async fn status_of_job_1(server: &Server) -> Value {
    server.get("/api/jobs/1").await.1["status"].clone()
}

#[tokio::test]
async fn a_405_names_the_methods_its_route_takes() {
    let server = Server::start(&[]);
    for (method, path, allow) in [
        ("DELETE", "/api/jobs", "get, head, post"),
        ("PUT", "/pkg", "post"),
        ("POST", "/healthz", "get, head"),
        ("PATCH", "/api/schedules/1", "get, head, delete"),
        ("POST", "/jobs/cancel/1/", "get"),
    ] {
        let (head, body) = raw(server.addr, method, path, &[]);
        assert!(head.starts_with("http/1.1 405"), "{method} {path}: {head}");
        assert!(
            head.contains(&format!("\r\nallow: {allow}\r\n")),
            "{method} {path}: {head}"
        );
        assert!(body.contains("method_not_allowed"), "{body}");
    }
}

#[tokio::test]
async fn head_answers_wherever_get_reads_but_not_on_the_old_routes_that_change_state() {
    let (server, _ws) = with_a_job(&[]).await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
        "/api/jobs",
        "/api/jobs/1",
        &format!("/api/robots/{ROBOT}"),
        "/ui/",
    ] {
        let (head, body) = raw(server.addr, "HEAD", path, &[]);
        assert!(head.starts_with("http/1.1 200"), "HEAD {path}: {head}");
        assert_eq!(body, "", "HEAD {path} sent a body");
    }
    for path in ["/jobs/cancel/1/", "/jobs/force/1", "/api/jobs/cancel/1"] {
        let (head, _) = raw(server.addr, "HEAD", path, &[]);
        assert!(head.starts_with("http/1.1 405"), "HEAD {path}: {head}");
        assert!(head.contains("\r\nallow: get\r\n"), "{head}");
    }
    assert_eq!(status_of_job_1(&server).await, "Pending");
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_bad_idempotency_key_on_every_trigger_route() {
    let (server, _ws) = with_a_job(&[]).await;
    let body = trigger(package()).to_string();
    for path in [
        "/api/jobs",
        "/pkg",
        "/robots/package",
        "/api/robots/package",
    ] {
        let long = "k".repeat(300);
        for key in [&b"cl\xc3\xa9"[..], &b"\xff\xfe"[..], long.as_bytes()] {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nIdempotency-Key: ",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(key);
            request.extend_from_slice(b"\r\n\r\n");
            request.extend_from_slice(body.as_bytes());
            stream.write_all(&request).unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{path} {key:?}: {answer}"
            );
            assert!(
                answer.contains("\"code\":\"bad_idempotency_key\""),
                "{answer}"
            );
        }
    }
    // Nothing was created: job 1 is the only one.
    assert_eq!(
        server.get("/api/jobs").await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn pages_of_other_sites_cannot_change_state_and_same_origin_always_passes() {
    let (server, _ws) = with_a_job(&[]).await;
    let ours = format!("http://{}", server.addr);
    let evil = "https://evil.example";
    // A cross-site link, image or form, to the old GET routes and to the API.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let refused: [Case<'_>; 6] = [
        (
            "GET",
            "/jobs/cancel/1/",
            &[("sec-fetch-site", "cross-site")],
        ),
        (
            "GET",
            "/api/jobs/force/1",
            &[("referer", "https://evil.example/page")],
        ),
        ("GET", "/jobs/cancel/1", &[("origin", evil)]),
        ("POST", "/api/jobs/1/cancel", &[("origin", evil)]),
        (
            "POST",
            "/api/jobs/1/force",
            &[("sec-fetch-site", "cross-site")],
        ),
        ("POST", "/pkg", &[("origin", "null")]),
    ];
    for (method, path, headers) in refused {
        let (status, body) = http(server.addr, method, path, Some("{}"), headers).await;
        assert_eq!(status, 403, "{method} {path} {headers:?}: {body}");
        assert_eq!(body["code"], "origin_not_allowed");
    }
    assert_eq!(status_of_job_1(&server).await, "Pending");
    // Reads from anywhere are fine (no credentials ride along).
    let (status, headers, _) =
        http_raw(server.addr, "GET", "/api/jobs", None, &[("origin", evil)]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");
    // The same origin always passes: the operator's page is served from here.
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/jobs/1/cancel",
        None,
        &[("origin", &ours), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(status, 200);
    // A page of another site cannot open a robot's WebSocket either.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.ws_url("/"),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("origin", evil.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test]
async fn listed_origins_may_change_state_and_the_page_itself_still_can() {
    let (server, _ws) = with_a_job(&["--allowed-origins", "https://studio.example"]).await;
    let ours = format!("http://{}", server.addr);
    // The operator's page, same origin, is not on the list and must not need to be.
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/jobs/1/force",
        None,
        &[("origin", &ours)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, _) = http_raw(
        server.addr,
        "POST",
        "/api/jobs",
        Some(&trigger(package()).to_string()),
        &[
            ("origin", "https://studio.example"),
            ("sec-fetch-site", "cross-site"),
        ],
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://studio.example"
    );
    let (status, headers, _) = http_raw(
        server.addr,
        "OPTIONS",
        "/api/jobs/2/cancel",
        None,
        &[
            ("origin", "https://studio.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let (status, _) = http(
        server.addr,
        "GET",
        "/jobs/cancel/2/",
        None,
        &[("origin", "https://other.example")],
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn metrics_count_jobs_at_most_once_per_interval_whatever_the_scrapers() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    let first = metrics(&server).await;
    assert_eq!(metric_value(&first, "rpa_jobs{status=\"Pending\"}"), 0.0);
    assert_eq!(server.post("/api/jobs", &trigger(package())).await.0, 201);
    // Sixteen scrapers at once: all answered, and from the counts made for the first one.
    let scrapes = (0..16).map(|_| metrics(&server));
    for text in futures_util::future::join_all(scrapes).await {
        assert_eq!(metric_value(&text, "rpa_jobs{status=\"Pending\"}"), 0.0);
        // Counters are not cached.
        assert_eq!(metric_value(&text, "rpa_triggers_accepted_total"), 1.0);
    }
    // Counted anew after the interval.
    common::eventually(Duration::from_secs(10), || async {
        let text = metrics(&server).await;
        (metric_value(&text, "rpa_jobs{status=\"Pending\"}") == 1.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_package_is_delivered_as_written_and_one_holding_job_id_is_refused() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", ROBOT).await;
    let body = format!(
        r#"{{"Package": {{"package_name": "p", "path": "a/b.std", "n": 123456789012345678901234567890, "f": 1.50, "u": 18446744073709551616, "e": "\u00e9"}},
            "Robot": {{"robot_name": "R", "robot_address": "{ROBOT}"}},
            "Schedule": {{"at": "{}"}}}}"#,
        chrono::Utc::now().to_rfc3339()
    );
    let (status, _) = http(server.addr, "POST", "/api/jobs", Some(&body), &[]).await;
    assert_eq!(status, 201);
    let verbatim = r#"{"package_name":"p","path":"a/b.std","n":123456789012345678901234567890,"f":1.50,"u":18446744073709551616,"e":"\u00e9""#;
    let (job_id, _, text) = next_package(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(job_id, 1);
    // The `_event` dialect sends the package as a string: its text holds the numbers as sent.
    let frame: Value = serde_json::from_str(&text).unwrap();
    let delivered = frame["value"].as_str().unwrap();
    assert_eq!(delivered, format!("{verbatim},\"job_id\":1}}"));
    let file = common::eventually(Duration::from_secs(5), || async {
        std::fs::read_to_string(server.dir.join("packages/p_1")).ok()
    })
    .await;
    assert_eq!(file, format!("{{\"Package\":{verbatim}}},\"JobID\":1}}"));
    let (_, _, shown) = http_raw(server.addr, "GET", "/api/jobs/1", None, &[]).await;
    assert!(shown.contains(verbatim), "{shown}");
    let with_job_id = trigger(json!({"package_name": "p", "path": "a", "job_id": 9}));
    let (status, problem) = server.post("/api/jobs", &with_job_id).await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "Package.job_id");
}

#[tokio::test]
async fn paths_with_letters_that_fold_into_ascii_are_refused() {
    let server = Server::start(&[]);
    let _ws = server.robot("R", ROBOT).await;
    for path in ["\u{a7f3}oo/x", "%\u{a7f3}\u{a7f3}/x", "a/\u{1d2c}/b"] {
        let doc = trigger(json!({"package_name": "p", "path": path}));
        let (status, problem) = server.post("/api/jobs", &doc).await;
        assert_eq!(status, 422, "{path:?}");
        assert_eq!(problem["errors"][0]["field"], "Package.path");
    }
}

/// The server started in a fresh folder with `TZ=tz` (and no --timezone).
fn with_tz(dir: &std::path::Path, tz: &str) -> ServerProcess {
    ServerCommand::new(env!("CARGO_BIN_EXE_socket-server"), dir)
        .env("TZ", tz)
        .start_timeout(Duration::from_secs(30))
        .start()
        .unwrap_or_else(|error| panic!("TZ={tz:?}: {error}"))
}

#[tokio::test]
async fn tz_in_the_forms_containers_set_never_stops_the_start() {
    for (tz, zone, warns) in [
        ("UTC0", "UTC", false),
        ("GMT0", "UTC", false),
        ("", "UTC", false),
        (":Europe/Berlin", "Europe/Berlin", false),
        (":/nonexistent/localtime", "UTC", false),
        ("CET-1CEST,M3.5.0,M10.5.0/3", "UTC", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let process = with_tz(dir.path(), tz);
        let addr = process.addr();
        // Schedules that name no zone show the server's, always as an IANA name.
        let mut ws = connect_robot(addr).await;
        let doc = json!({
            "Package": package(),
            "Robot": {"robot_name": "R", "robot_address": ROBOT},
            "Schedule": {"cron": "0 9 * * *"},
        });
        let (status, schedule) = http(addr, "POST", "/api/jobs", Some(&doc.to_string()), &[]).await;
        assert_eq!(status, 201, "TZ={tz:?}: {schedule}");
        assert_eq!(schedule["timezone"], zone, "TZ={tz:?}");
        let warnings = process
            .log_today()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("not an IANA time zone"))
            .count();
        assert_eq!(warnings, usize::from(warns), "TZ={tz:?}");
        let _ = ws.close(None).await;
    }
    // Only an explicit --timezone that names no zone stops the start.
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .current_dir(dir.path())
        .args(["--listen", "127.0.0.1:0", "--timezone", "UTC0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--timezone"), "{stderr}");
}

async fn connect_robot(addr: SocketAddr) -> common::Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    send(&mut ws, &common::metadata("_event", "R", ROBOT)).await;
    common::eventually(Duration::from_secs(5), || async {
        let (_, robot) = http(addr, "GET", &format!("/api/robots/{ROBOT}"), None, &[]).await;
        (robot["online"] == true).then_some(())
    })
    .await;
    ws
}

#[test]
fn help_shows_the_listen_default_and_a_port_alone_listens() {
    let output = Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("[default: 0.0.0.0:4000]"), "{help}");
    let dir = tempfile::tempdir().unwrap();
    // `--listen 0` is a port alone: every address, a free port.
    let process = ServerCommand::new(env!("CARGO_BIN_EXE_socket-server"), dir.path())
        .args(["--listen", "0"])
        .start()
        .unwrap();
    assert_eq!(process.addr().ip().to_string(), "127.0.0.1");
    assert_ne!(process.addr().port(), 0);
}

#[test]
fn a_port_in_use_is_one_line_on_stderr_even_with_the_log_there() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .current_dir(dir.path())
        .args(["--listen", &taken, "--log-stderr", "true"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("socket-server: --listen: "), "{stderr}");
    // Nothing was created: the port is checked first.
    assert!(!dir.path().join("data").exists());
    assert!(!dir.path().join("packages").exists());
}

#[cfg(feature = "postgres")]
#[test]
fn an_unreachable_postgresql_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .current_dir(dir.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database",
            "postgres://rpa:secret@127.0.0.1:1/rpa",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        !stderr.contains("\\n") && !stderr.contains('\t'),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
}

#[test]
fn with_stdout_and_stderr_closed_the_server_serves_on_and_stops_with_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .current_dir(dir.path())
        .args(["--listen", "127.0.0.1:0", "--log-stderr", "true"])
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    // Both pipes closed, as `server 2>&1 | head -1` leaves them.
    drop(child.stderr.take());
    // Each refused trigger writes a log line, to the closed stderr too.
    for _ in 0..5 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(
                b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                  Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            )
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    }
    rpa_testkit::server::send_signal(child.id(), "TERM").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
