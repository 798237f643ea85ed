//! Test harness: starts the real `socket-server` binary on a free port in a temporary folder and
//! talks to it like robots and operators do (WebSocket and HTTP over loopback).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running server process. Killed when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) addr: SocketAddr,
    pub(crate) dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server in a fresh temporary folder.
    pub(crate) fn start(args: &[&str]) -> Server {
        let temp = tempfile::tempdir().unwrap();
        let mut server = Server::start_in(temp.path(), args);
        server._temp = Some(temp);
        server
    }

    /// A server whose database, logs and packages live in `dir` (to restart on the same data).
    pub(crate) fn start_in(dir: &Path, args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_socket-server"));
        if let Some(url) = postgres_database(dir).filter(|_| !args.contains(&"--database")) {
            command.args(["--database", &url]);
        }
        let mut child = command
            .current_dir(dir)
            .args(["--listen", "127.0.0.1:0", "--log-stderr", "false"])
            .args(args)
            .env_remove("PORT")
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = sender.send(addr.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let addr = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let output = child.wait_with_output().unwrap();
                panic!(
                    "the server did not start: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        };
        Server {
            child: Some(child),
            addr,
            dir: dir.to_owned(),
            _temp: None,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Sends a signal by name (TERM, KILL, STOP, CONT) with the `kill` command.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub(crate) fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no shutdown at all.
    pub(crate) fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Today's log file, as text.
    pub(crate) fn log(&self) -> String {
        let name = chrono::Utc::now().format("%Y-%m-%d.log").to_string();
        std::fs::read_to_string(self.dir.join("serverLogs").join(name)).unwrap_or_default()
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        http(self.addr, "GET", path, None, &[]).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        http(self.addr, "POST", path, Some(&body.to_string()), &[]).await
    }

    /// Opens a WebSocket on `path` (`/`, `/ws` or `/api/robots/connect`).
    pub(crate) async fn connect(&self, path: &str) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url(path))
            .await
            .expect("WebSocket connects");
        ws
    }

    /// Opens a WebSocket and registers a robot speaking the `_event` dialect.
    pub(crate) async fn robot(&self, name: &str, address: &str) -> Ws {
        let mut ws = self.connect("/").await;
        send(&mut ws, &metadata("_event", name, address)).await;
        self.wait_online(address, true).await;
        ws
    }

    /// Waits until the API shows the robot online (or offline).
    pub(crate) async fn wait_online(&self, address: &str, online: bool) -> Value {
        let path = format!("/api/robots/{address}");
        let mut last = Value::Null;
        for _ in 0..500 {
            let (status, robot) = self.get(&path).await;
            if status == 200 && robot["online"] == online {
                return robot;
            }
            last = robot;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("robot {address} never became online={online}: {last}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The folder goes away with this server: so does its PostgreSQL database.
        if let Some(temp) = &self._temp {
            drop_postgres_database(temp.path());
        }
    }
}

/// One HTTP/1.1 request on a new connection: (status, JSON body or Null).
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let (status, _, text) = http_raw(addr, method, path, body, headers).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One HTTP/1.1 request: (status, headers, body text).
pub(crate) async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    let typed = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if body.is_some() && !typed {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// The metadata frame a robot sends, in dialect `key` (`_event` or `event`).
pub(crate) fn metadata(key: &str, name: &str, address: &str) -> Value {
    serde_json::json!({
        key: "client robot metaData",
        "value": {"robotName": name, "robotAddress": address, "userID": 4}
    })
}

pub(crate) async fn send(ws: &mut Ws, frame: &Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next text frame within `limit`, skipping pings; `None` on silence.
pub(crate) async fn next_text(ws: &mut Ws, limit: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match frame {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The close code the server sends, within `limit` (reading and discarding other frames).
pub(crate) async fn close_code(ws: &mut Ws, limit: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()? {
            Some(Ok(Message::Close(Some(frame)))) => return Some(u16::from(frame.code)),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Polls `check` until it returns `Some`, for at most `limit`.
pub(crate) async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything the database holds, as text: robots, their messages, jobs and their events,
/// schedules. Read through the store's own API from a second connection, to compare before and
/// after something that must change nothing.
pub(crate) fn dump(dir: &Path) -> String {
    use rpa_store::{JobFilter, Location, RobotFilter, ScheduleFilter, Store, StoreConfig};
    let config = match postgres_database(dir) {
        Some(url) => StoreConfig::at(Location::Postgres(url)),
        None => StoreConfig::new(dir.join("data/socket-server.db")),
    };
    let store = Store::open(&config).unwrap();
    let text = store
        .read(|conn| {
            let mut out = String::new();
            let robots = conn.robots(&RobotFilter {
                limit: 100_000,
                ..RobotFilter::default()
            })?;
            for robot in &robots {
                // Online state and connection ids change with connections, not with data.
                out.push_str(&format!(
                    "robot {} {} {:?} {}\n",
                    robot.address, robot.name, robot.user_id, robot.metadata
                ));
                for message in conn.robot_messages(&robot.address, None, 100_000)? {
                    out.push_str(&format!("message {} {}\n", message.id, message.value));
                }
            }
            for job in conn.jobs(&JobFilter {
                limit: 100_000,
                ..JobFilter::default()
            })? {
                out.push_str(&format!("job {job:?}\n"));
                for event in conn.job_events(job.id)? {
                    out.push_str(&format!("event {event:?}\n"));
                }
            }
            for schedule in conn.schedules(&ScheduleFilter {
                limit: 100_000,
                ..ScheduleFilter::default()
            })? {
                out.push_str(&format!("schedule {schedule:?}\n"));
            }
            Ok(out)
        })
        .unwrap();
    store.shutdown();
    text
}

/// When `RPA_TEST_POSTGRES` names a PostgreSQL server (`postgres://user@host:port`), the tests
/// run the server on it instead of SQLite: each test folder gets a database of its own there
/// (so a restart in the same folder finds its data), created with `psql` on first use. CI runs
/// the suite both ways (`.ci/run`).
pub(crate) fn postgres_database(dir: &Path) -> Option<String> {
    let server = std::env::var("RPA_TEST_POSTGRES").ok()?;
    let name = database_name(dir);
    let mut created = CREATED_DATABASES.lock().unwrap();
    if created
        .get_or_insert_with(HashSet::new)
        .insert(name.clone())
    {
        psql(
            &format!("{server}/postgres"),
            &format!("CREATE DATABASE {name}"),
        );
    }
    Some(format!("{server}/{name}"))
}

/// Drops the database [`postgres_database`] made for `dir`, if it made one.
pub(crate) fn drop_postgres_database(dir: &Path) {
    let Ok(server) = std::env::var("RPA_TEST_POSTGRES") else {
        return;
    };
    let name = database_name(dir);
    let made = CREATED_DATABASES
        .lock()
        .unwrap()
        .as_mut()
        .is_some_and(|created| created.remove(&name));
    if made {
        psql(
            &server,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }
}

static CREATED_DATABASES: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn database_name(dir: &Path) -> String {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(dir);
    format!("rpa_e2e_{}_{hash:016x}", std::process::id())
}

/// Runs one SQL command with `psql` on the database at `url`.
pub(crate) fn psql(url: &str, command: &str) {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(url)
        .args(["-c", command])
        .output()
        .expect("psql runs (RPA_TEST_POSTGRES is set)");
    assert!(
        output.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The next package notification: (job_id, package object), parsed from either dialect.
pub(crate) async fn next_package(ws: &mut Ws, limit: Duration) -> Option<(i64, Value, String)> {
    let text = next_text(ws, limit).await?;
    let frame: Value = serde_json::from_str(&text).unwrap();
    let key = if frame.get("_event").is_some() {
        "_event"
    } else {
        "event"
    };
    assert_eq!(frame[key], "notification", "{text}");
    let package = match &frame["value"] {
        Value::String(inner) => serde_json::from_str(inner).unwrap(),
        object => object.clone(),
    };
    Some((package["job_id"].as_i64().unwrap(), package, text))
}
