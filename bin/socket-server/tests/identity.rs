#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Robot identity end to end (issue 16, identity.md): credentials enrolled through the API,
//! presented by robots in the URL their operator configures or in a header, bound to one
//! address, rotated and revoked; `--robot-auth`; tokens never stored, logged or echoed.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Server, Ws, close_code, dump, eventually, http, http_raw, metadata, next_text, send};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ROBOT: &str = "001AFFDB45C2";
const OTHER: &str = "00000000000B";

/// Enrols a credential for `address` and returns (its id, its token).
async fn enrol(server: &Server, address: &str, headers: &[(&str, &str)]) -> (i64, String) {
    let body = json!({"description": format!("{address} laptop")}).to_string();
    let path = format!("/api/robots/{address}/credentials");
    let (status, answer_headers, text) =
        http_raw(server.addr, "POST", &path, Some(&body), headers).await;
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let id = created["id"].as_i64().unwrap();
    let location = format!(
        "/api/robots/{}/credentials/{id}",
        created["robot_address"].as_str().unwrap()
    );
    assert_eq!(answer_headers["location"], location.as_str());
    let (status, shown) = http(server.addr, "GET", &location, None, headers).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["description"], created["description"]);
    assert!(shown.get("token").is_none(), "{shown}");
    (id, created["token"].as_str().unwrap().to_owned())
}

/// Opens a robot connection on `path` (its token in the query, if any) with these extra
/// headers: the upgrade's status when it is refused.
async fn open(server: &Server, path: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut request = server.ws_url(path).into_client_request().unwrap();
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes());
        request
            .headers_mut()
            .insert(name.unwrap(), value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("upgrade failed: {other}"),
    }
}

/// Registers `address` on a new connection opened with `path` and `headers`.
async fn register(server: &Server, path: &str, headers: &[(&str, &str)], address: &str) -> Ws {
    let mut ws = open(server, path, headers).await.unwrap();
    send(&mut ws, &metadata("_event", "LAPTOP-1", address)).await;
    server.wait_online(address, true).await;
    ws
}

/// The connection's metadata is declined and then it is closed with 1008.
async fn declined_then_closed(ws: &mut Ws, address: &str) {
    send(ws, &metadata("_event", "IMPOSTOR", address)).await;
    let reply = next_text(ws, Duration::from_secs(5)).await.unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["_event"], "Decline metaData reception", "{reply}");
    assert_eq!(close_code(ws, Duration::from_secs(5)).await, Some(1008));
}

/// Waits for the server's Close, at most `limit`: its code, and when it came.
async fn closed_within(ws: &mut Ws, limit: Duration) -> u16 {
    let started = Instant::now();
    let code = close_code(ws, limit).await;
    assert!(
        started.elapsed() <= limit,
        "closed after {:?}",
        started.elapsed()
    );
    code.expect("a Close frame")
}

#[tokio::test]
async fn a_field_robot_connects_with_its_token_in_the_url_and_a_revoked_one_is_closed_at_once() {
    let server = Server::start(&[]);
    // Enrolled before its first connection: recorded offline.
    let (first_id, first) = enrol(&server, ROBOT, &[]).await;
    assert!(first.starts_with("rbt_") && first.len() == 47, "{first}");
    let (status, robot) = server.get(&format!("/api/robots/{ROBOT}")).await;
    assert_eq!((status, &robot["online"]), (200, &json!(false)), "{robot}");
    // The robot's operator puts the token in the URL the robot connects to.
    let mut ws = register(
        &server,
        &format!("/api/robots/connect?token={first}"),
        &[],
        ROBOT,
    )
    .await;
    let (_, events) = server.get("/api/events?subject=robots/001AFFDB45C2").await;
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "robot.credential_created",
            "robot.registered",
            "robot.online"
        ]
    );

    // Rotation: a second credential, rolled out, then the first revoked.
    let (second_id, second) = enrol(&server, ROBOT, &[]).await;
    let (status, listed) = server
        .get(&format!("/api/robots/{ROBOT}/credentials"))
        .await;
    assert_eq!(status, 200);
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    assert_eq!(items[0]["id"], first_id);
    assert!(items[0]["last_used_at"].is_string(), "{listed}");
    assert!(items[1]["last_used_at"].is_null(), "{listed}");
    assert!(items.iter().all(|c| c.get("token").is_none()), "{listed}");

    let started = Instant::now();
    let (status, _) = http(
        server.addr,
        "DELETE",
        &format!("/api/robots/{ROBOT}/credentials/{first_id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(closed_within(&mut ws, Duration::from_secs(1)).await, 1008);
    assert!(started.elapsed() < Duration::from_secs(1));
    // The revoked token opens nothing any more; the new one does, in a header too.
    assert_eq!(
        open(&server, &format!("/?token={first}"), &[]).await.err(),
        Some(401)
    );
    let bearer = format!("Bearer {second}");
    let _ws = register(&server, "/ws", &[("authorization", &bearer)], ROBOT).await;
    let (status, _) = http(
        server.addr,
        "DELETE",
        &format!("/api/robots/{ROBOT}/credentials/{first_id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404, "revoked already");

    let (_, events) = server.get("/api/events?type=robot.credential_*").await;
    let events = events["items"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "robot.credential_created",
            "robot.credential_created",
            "robot.credential_revoked"
        ]
    );
    assert_eq!(events[2]["data"]["credential"]["id"], first_id);
    assert_eq!(events[1]["data"]["credential"]["id"], second_id);
    assert_eq!(events[2]["data"]["robot"]["robot_address"], ROBOT);

    // The tokens are nowhere but in the answers that created them.
    let everything = format!("{}{}{events:?}", server.log(), dump(&server.dir));
    for token in [&first, &second] {
        let secret = &token["rbt_".len()..];
        assert!(!everything.contains(secret), "a token was stored or logged");
    }
    assert!(
        server.log().contains("/api/robots/connect?token=***"),
        "the upgrade is logged with its token cut out"
    );
}

#[tokio::test]
async fn a_protected_address_cannot_be_taken_and_a_credential_registers_only_its_own() {
    let server = Server::start(&[]);
    let (_, token) = enrol(&server, ROBOT, &[]).await;
    let mut holder = register(&server, &format!("/?token={token}"), &[], ROBOT).await;
    let (_, robot) = server.get(&format!("/api/robots/{ROBOT}")).await;
    let connection = robot["connection_id"].clone();

    // Without a credential of its own, another client cannot register as the robot.
    let mut impostor = open(&server, "/", &[]).await.unwrap();
    declined_then_closed(&mut impostor, ROBOT).await;
    // A credential of another robot does not do either; the attempt is on that robot's record.
    let (_, other_token) = enrol(&server, OTHER, &[]).await;
    let mut borrowed = open(&server, &format!("/?token={other_token}"), &[])
        .await
        .unwrap();
    declined_then_closed(&mut borrowed, ROBOT).await;
    let (_, messages) = server.get(&format!("/api/robots/{OTHER}/messages")).await;
    assert_eq!(
        messages["items"][0]["value"]["robotAddress"], ROBOT,
        "{messages}"
    );

    // The robot kept its connection and it still works.
    let (_, robot) = server.get(&format!("/api/robots/{ROBOT}")).await;
    assert_eq!(robot["online"], true);
    assert_eq!(robot["connection_id"], connection);
    send(
        &mut holder,
        &json!({"_event": "client robot message", "value": "still here"}),
    )
    .await;
    eventually(Duration::from_secs(5), || async {
        let (_, page) = server.get(&format!("/api/robots/{ROBOT}/messages")).await;
        (page["items"][0]["value"] == "still here").then_some(())
    })
    .await;
    // An address without credentials registers as before (open mode).
    let _free = register(&server, "/", &[], "00000000000C").await;
    // Tokens that are no credential are refused before the upgrade.
    for bad in [
        "rbt_tooshort".to_owned(),
        format!("rbt_{}", "A".repeat(43)),
        "whatever".to_owned(),
    ] {
        assert_eq!(
            open(&server, &format!("/?token={bad}"), &[]).await.err(),
            Some(401),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn in_enrolled_mode_every_robot_needs_a_credential_of_its_own() {
    let server = Server::start(&[
        "--robot-auth",
        "enrolled",
        "--api-token",
        "operator-secret",
        "--robot-token",
        "shared-secret",
    ]);
    let api = [("authorization", "Bearer operator-secret")];
    let (status, _) = http(
        server.addr,
        "POST",
        &format!("/api/robots/{ROBOT}/credentials"),
        Some("{}"),
        &[],
    )
    .await;
    assert_eq!(status, 401, "credentials need the API token");
    let (_, token) = enrol(&server, ROBOT, &api).await;
    assert_eq!(open(&server, "/", &[]).await.err(), Some(401));
    assert_eq!(
        open(&server, "/?token=shared-secret", &[]).await.err(),
        Some(401),
        "the shared token registers no one"
    );
    assert_eq!(
        open(&server, "/", &[("authorization", "Bearer operator-secret")])
            .await
            .err(),
        Some(401),
        "the API token is not a robot's"
    );
    // The header wins over the query.
    let bearer = format!("Bearer {token}");
    let mut ws = open(&server, "/?token=nonsense", &[("authorization", &bearer)])
        .await
        .unwrap();
    send(&mut ws, &metadata("_event", "LAPTOP-1", ROBOT)).await;
    eventually(Duration::from_secs(5), || async {
        let path = format!("/api/robots/{ROBOT}");
        let (_, robot) = http(server.addr, "GET", &path, None, &api).await;
        (robot["online"] == true).then_some(())
    })
    .await;
    assert_eq!(
        open(
            &server,
            &format!("/?token={token}"),
            &[("authorization", "Bearer nonsense")]
        )
        .await
        .err(),
        Some(401)
    );
}

#[test]
fn enrolled_mode_without_an_api_token_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_socket-server"))
        .current_dir(dir.path())
        .args(["--listen", "127.0.0.1:0", "--robot-auth", "enrolled"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--robot-auth"), "{stderr}");
}

/// This machine's address on its main network interface, if it has one (no packet is sent).
fn outward_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn without_an_api_token_only_loopback_clients_manage_credentials() {
    let Some(ip) = outward_address() else {
        eprintln!("this machine has no address but loopback: the rule cannot be checked");
        return;
    };
    let server = Server::start(&["--listen", "0.0.0.0:0"]);
    let outside = SocketAddr::new(ip, server.addr.port());
    let path = format!("/api/robots/{ROBOT}/credentials");
    for (method, path, body) in [
        ("POST", path.as_str(), Some("{}")),
        ("GET", path.as_str(), None),
        ("DELETE", &format!("{path}/1"), None),
    ] {
        let (status, problem) = http(outside, method, path, body, &[]).await;
        assert_eq!(status, 403, "{method} {path}: {problem}");
        assert_eq!(problem["code"], "forbidden");
    }
    let (status, _) = http(outside, "GET", "/api/robots", None, &[]).await;
    assert_eq!(status, 200);
    enrol(&server, ROBOT, &[]).await;
}

#[tokio::test]
async fn credential_requests_are_validated() {
    let server = Server::start(&[]);
    let cases: [(&str, &str, u16); 7] = [
        (ROBOT, r#"{"description": 5}"#, 422),
        (ROBOT, r#"{"token": "rbt_chosen-by-the-client"}"#, 422),
        (ROBOT, "[]", 422),
        (ROBOT, "{", 400),
        ("connect", "{}", 422),
        ("bad%0Aaddress", "{}", 422),
        (
            ROBOT,
            &format!(r#"{{"description": "{}"}}"#, "x".repeat(501)),
            422,
        ),
    ];
    for (address, body, expected) in cases {
        let path = format!("/api/robots/{address}/credentials");
        let (status, problem) = http(server.addr, "POST", &path, Some(body), &[]).await;
        assert_eq!(status, expected, "{address} {body}: {problem}");
    }
    // Nothing was recorded by the refused requests.
    let (status, _) = server.get("/api/robots/bad%0Aaddress").await;
    assert_eq!(status, 404);
    let (status, _) = server
        .get(&format!("/api/robots/{OTHER}/credentials"))
        .await;
    assert_eq!(status, 404, "an unknown robot has no credentials to list");
    for _ in 0..10 {
        enrol(&server, ROBOT, &[]).await;
    }
    let path = format!("/api/robots/{ROBOT}/credentials");
    let (status, problem) = http(server.addr, "POST", &path, Some("{}"), &[]).await;
    assert_eq!(status, 422, "{problem}");
    let (status, _) = http(server.addr, "DELETE", &format!("{path}/999"), None, &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_credential_revoked_on_one_instance_closes_the_connection_held_by_another() {
    let shared = tempfile::tempdir().unwrap();
    let Some(url) = common::postgres_database(shared.path()) else {
        eprintln!("RPA_TEST_POSTGRES is not set: several instances need PostgreSQL; not run");
        return;
    };
    let args = ["--database", url.as_str()];
    let a = Server::start(&args);
    let b = Server::start(&args);
    let (id, token) = enrol(&a, ROBOT, &[]).await;
    let mut ws = register(&a, &format!("/?token={token}"), &[], ROBOT).await;
    let (status, _) = http(
        b.addr,
        "DELETE",
        &format!("/api/robots/{ROBOT}/credentials/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(closed_within(&mut ws, Duration::from_secs(1)).await, 1008);
    assert_eq!(
        open(&a, &format!("/?token={token}"), &[]).await.err(),
        Some(401)
    );
    drop(b);
    drop(a);
    common::drop_postgres_database(shared.path());
}
