//! Test harness: starts the real `socket-server` binary on a free port in a temporary folder
//! (through `rpa-testkit`) and talks to it like robots and operators do (WebSocket and HTTP over
//! loopback).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rpa_testkit::http::{HeaderMap, Method};
use rpa_testkit::{HttpClient, ServerCommand, ServerProcess, postgres};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running server process. Killed when dropped.
pub(crate) struct Server {
    process: ServerProcess,
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
        let mut command = ServerCommand::new(env!("CARGO_BIN_EXE_socket-server"), dir)
            .env("TZ", "UTC")
            .start_timeout(Duration::from_secs(30));
        if let Some(url) = postgres_database(dir).filter(|_| !args.contains(&"--database")) {
            command = command.flag("--database", url);
        }
        let process = command
            .args(args.iter().copied())
            .start()
            .unwrap_or_else(|error| panic!("{error}"));
        Server {
            addr: process.addr(),
            dir: dir.to_owned(),
            process,
            _temp: None,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid().unwrap()
    }

    pub(crate) fn ws_url(&self, path: &str) -> String {
        self.process.ws_url(path)
    }

    /// Sends a signal by name (TERM, KILL, STOP, CONT).
    pub(crate) fn signal(&self, name: &str) {
        self.process.signal(name).unwrap();
    }

    /// Waits for the process to exit, at most `limit`.
    pub(crate) fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.process.wait(limit).unwrap()
    }

    /// `kill -9`: no shutdown at all.
    pub(crate) fn kill9(&mut self) {
        self.process.kill9().unwrap();
    }

    /// Today's log file, as text.
    pub(crate) fn log(&self) -> String {
        self.process.log_today()
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
        let _ = self.process.kill9();
        // The folder goes away with this server: so does its PostgreSQL database.
        if let Some(temp) = &self._temp {
            postgres::drop_database_for(temp.path());
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

/// One HTTP/1.1 request on a new connection: (status, headers, body text). A body is sent as
/// JSON unless `headers` name a content type.
pub(crate) async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let body = body.map(|body| body.to_owned().into());
    let answer = HttpClient::new(addr)
        .request(method, path, body, headers)
        .await
        .unwrap();
    let text = answer.text();
    (answer.status, answer.headers, text)
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

/// `GET /metrics`, as text.
pub(crate) async fn metrics(server: &Server) -> String {
    let (status, headers, text) = http_raw(server.addr, "GET", "/metrics", None, &[]).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    text
}

/// The value of one sample (`name` with its labels, as written) in a metrics text.
pub(crate) fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
}

/// Reads `ws` (which answers the server's pings) until the server has recorded `count` sendings
/// as written: a field robot's sending is confirmed by its answer to the ping behind the package.
pub(crate) async fn until_confirmed(server: &Server, ws: &mut Ws, count: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_value(&metrics(server).await, "rpa_sendings_confirmed_total") < count {
        assert!(Instant::now() < deadline, "the sending was never confirmed");
        next_text(ws, Duration::from_millis(50)).await;
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

/// The PostgreSQL database of a test folder when `RPA_TEST_POSTGRES` is set (made on first use,
/// so that a restart in the same folder finds its data); `None` runs the server on SQLite.
pub(crate) fn postgres_database(dir: &Path) -> Option<String> {
    postgres::database_for(dir).unwrap()
}

/// Drops the database [`postgres_database`] made for `dir`, if it made one.
pub(crate) fn drop_postgres_database(dir: &Path) {
    postgres::drop_database_for(dir);
}

/// Runs one SQL command with `psql` on the database at `url`.
pub(crate) fn psql(url: &str, command: &str) {
    postgres::psql(url, command).unwrap();
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
