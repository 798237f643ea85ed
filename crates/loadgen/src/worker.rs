//! The hidden `worker` subcommand: one process holding up to `--robots-per-process` lean
//! robots, each a tokio task owning one WebSocket bound to the process's own source address.
//! Commands arrive as JSON lines on stdin, replies leave as JSON lines on stdout.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use rpa_protocol::{
    Dialect, EXTENDED_PROTOCOL_VERSION, JobReport, ReportStatus, RobotFrame, RobotMessage,
    ServerMessage, parse_server_frame,
};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::wire::{
    Command, ConnectReport, Delivery, Reply, WorkerStats, robot_address, robot_name,
};

type Ws = WebSocketStream<TcpStream>;

/// How robots of one process behave.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub server: SocketAddr,
    /// The upgrade path (`/`, `/ws`, `/api/robots/connect`).
    pub path: String,
    /// The source address every connection of this process is bound to.
    pub source: IpAddr,
    /// Global index of the first robot.
    pub first: usize,
    pub count: usize,
    pub prefix: String,
    pub dialect: Dialect,
    /// Extended protocol: announce `"protocol": 2`, wait for `registered`, acknowledge each
    /// package.
    pub extended: bool,
    /// Report success on each package.
    pub report: bool,
}

/// Small buffers: a worker holds thousands of mostly idle robots.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

#[derive(Debug, Clone)]
enum Action {
    Idle,
    Connect {
        upto: usize,
        semaphore: Option<Arc<Semaphore>>,
        timeout: Duration,
        retries: u32,
    },
    Drop,
    Shutdown,
}

#[derive(Debug, Clone)]
struct Order {
    generation: u64,
    action: Action,
    started: Instant,
}

#[derive(Debug)]
struct Outcome {
    generation: u64,
    connected: bool,
    already: bool,
    handshake_us: u64,
    errors: Vec<String>,
}

struct Shared {
    config: WorkerConfig,
    connected: AtomicUsize,
    pings: Vec<AtomicU32>,
    unexpected_drops: AtomicU64,
    drop_reasons: Mutex<BTreeMap<String, u64>>,
    problems: Mutex<BTreeMap<String, u64>>,
    deliveries: Mutex<Vec<Delivery>>,
    delivered: AtomicU64,
    acks: AtomicU64,
    reports: AtomicU64,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: String) {
    if let Ok(mut map) = map.lock() {
        *map.entry(key).or_default() += 1;
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Runs a worker until stdin closes or a shutdown command arrives.
pub fn run(config: WorkerConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: WorkerConfig) -> Result<()> {
    let count = config.count;
    // Start somewhere else on every run, away from the ports the last run left in TIME_WAIT.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    NEXT_PORT.store(seed % PORTS, Ordering::Relaxed);
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        pings: (0..count).map(|_| AtomicU32::new(0)).collect(),
        config,
        connected: AtomicUsize::new(0),
        unexpected_drops: AtomicU64::new(0),
        drop_reasons: Mutex::new(BTreeMap::new()),
        problems: Mutex::new(BTreeMap::new()),
        deliveries: Mutex::new(Vec::new()),
        delivered: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        reports: AtomicU64::new(0),
        outcomes: outcomes_tx,
    });
    let (control, orders) = watch::channel(Order {
        generation: 0,
        action: Action::Idle,
        started: Instant::now(),
    });
    let mut robots = Vec::with_capacity(count);
    for index in 0..count {
        robots.push(tokio::spawn(robot(
            index,
            Arc::clone(&shared),
            orders.clone(),
        )));
    }
    drop(orders);
    let mut stdout = tokio::io::stdout();
    write_reply(&mut stdout, &Reply::Ready { robots: count }).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut generation = 0;
    while let Some(line) = lines.next_line().await? {
        let command: Command = match serde_json::from_str(&line) {
            Ok(command) => command,
            Err(error) => {
                let message = format!("unreadable command: {error}");
                write_reply(&mut stdout, &Reply::Error { message }).await?;
                continue;
            }
        };
        generation += 1;
        let reply = match command {
            Command::Connect {
                upto,
                concurrency,
                timeout_ms,
                retries,
            } => {
                let upto = upto.unwrap_or(count).min(count);
                let timeout = Duration::from_millis(timeout_ms);
                let started = Instant::now();
                let _ = control.send(Order {
                    generation,
                    action: Action::Connect {
                        upto,
                        semaphore: (concurrency > 0).then(|| Arc::new(Semaphore::new(concurrency))),
                        timeout,
                        retries,
                    },
                    started,
                });
                // Each attempt has its own timeout; the whole order gets them all plus back-offs.
                let limit =
                    timeout * (retries + 1) + Duration::from_secs(5 * u64::from(retries + 1));
                let deadline = tokio::time::Instant::from_std(started + limit);
                let mut report = ConnectReport {
                    robots: upto,
                    ..ConnectReport::default()
                };
                let mut answered = 0;
                while answered < upto {
                    let Ok(Some(outcome)) =
                        tokio::time::timeout_at(deadline, outcomes.recv()).await
                    else {
                        break;
                    };
                    if outcome.generation != generation {
                        continue;
                    }
                    answered += 1;
                    report.failed_attempts += outcome.errors.len() as u64;
                    for error in outcome.errors {
                        *report.errors.entry(error).or_default() += 1;
                    }
                    if outcome.already {
                        report.already += 1;
                    } else if outcome.connected {
                        report.connected += 1;
                        report.handshake_us.push(outcome.handshake_us);
                    } else {
                        report.failed += 1;
                    }
                }
                if answered < upto {
                    report.failed += upto - answered;
                    *report
                        .errors
                        .entry("no outcome before the command's deadline".to_owned())
                        .or_default() += (upto - answered) as u64;
                }
                report.elapsed_us = started.elapsed().as_micros() as u64;
                Reply::Connected(report)
            }
            Command::Drop { timeout_ms } => {
                let started = Instant::now();
                let _ = control.send(Order {
                    generation,
                    action: Action::Drop,
                    started,
                });
                let deadline = started + Duration::from_millis(timeout_ms);
                while shared.connected.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Reply::Dropped {
                    still_connected: shared.connected.load(Ordering::SeqCst),
                    elapsed_us: started.elapsed().as_micros() as u64,
                }
            }
            Command::Stats => Reply::Stats(stats(&shared)),
            Command::ResetPings => {
                for pings in &shared.pings {
                    pings.store(0, Ordering::Relaxed);
                }
                Reply::PingsReset
            }
            Command::Collect => Reply::Deliveries {
                items: shared
                    .deliveries
                    .lock()
                    .map(|mut d| std::mem::take(&mut *d))
                    .unwrap_or_default(),
            },
            Command::Shutdown => {
                let _ = control.send(Order {
                    generation,
                    action: Action::Shutdown,
                    started: Instant::now(),
                });
                let closing = futures_util::future::join_all(robots.drain(..));
                let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;
                write_reply(&mut stdout, &Reply::Bye).await?;
                return Ok(());
            }
        };
        write_reply(&mut stdout, &reply).await?;
    }
    // The parent went away.
    let _ = control.send(Order {
        generation: generation + 1,
        action: Action::Shutdown,
        started: Instant::now(),
    });
    Ok(())
}

async fn write_reply(stdout: &mut tokio::io::Stdout, reply: &Reply) -> Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    stdout.write_all(&line).await?;
    stdout.flush().await?;
    Ok(())
}

fn stats(shared: &Shared) -> WorkerStats {
    let pings: Vec<u64> = shared
        .pings
        .iter()
        .map(|p| u64::from(p.load(Ordering::Relaxed)))
        .collect();
    WorkerStats {
        robots: shared.config.count,
        connected: shared.connected.load(Ordering::SeqCst),
        unexpected_drops: shared.unexpected_drops.load(Ordering::Relaxed),
        drop_reasons: shared
            .drop_reasons
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
        pings_min: pings.iter().copied().min().unwrap_or(0),
        pings_max: pings.iter().copied().max().unwrap_or(0),
        pings_sum: pings.iter().sum(),
        deliveries: shared.delivered.load(Ordering::Relaxed),
        acks_sent: shared.acks.load(Ordering::Relaxed),
        reports_sent: shared.reports.load(Ordering::Relaxed),
        problems: shared
            .problems
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
    }
}

enum End {
    /// A drop command: wait for the next connect.
    Dropped,
    /// The connection ended on its own: wait for the next connect.
    Lost,
    Shutdown,
}

async fn robot(index: usize, shared: Arc<Shared>, mut orders: watch::Receiver<Order>) {
    let mut served = 0;
    loop {
        let order = orders.borrow_and_update().clone();
        match &order.action {
            Action::Shutdown => return,
            Action::Connect { upto, .. } if order.generation > served && index < *upto => {
                served = order.generation;
                let (socket, outcome) = connect(index, &shared, &order).await;
                let _ = shared.outcomes.send(outcome);
                if let Some(socket) = socket {
                    shared.connected.fetch_add(1, Ordering::SeqCst);
                    let end = session(index, &shared, socket, &mut orders, &mut served).await;
                    shared.connected.fetch_sub(1, Ordering::SeqCst);
                    if matches!(end, End::Shutdown) {
                        return;
                    }
                }
                continue;
            }
            _ => {}
        }
        if orders.changed().await.is_err() {
            return;
        }
    }
}

async fn connect(index: usize, shared: &Shared, order: &Order) -> (Option<Ws>, Outcome) {
    let mut outcome = Outcome {
        generation: order.generation,
        connected: false,
        already: false,
        handshake_us: 0,
        errors: Vec::new(),
    };
    let Action::Connect {
        semaphore,
        timeout,
        retries,
        ..
    } = &order.action
    else {
        return (None, outcome);
    };
    for attempt in 0..=*retries {
        let permit = match semaphore {
            Some(semaphore) => semaphore.acquire().await.ok(),
            None => None,
        };
        let attempt_started = Instant::now();
        let result = tokio::time::timeout(*timeout, open(index, shared))
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()))
            // How long the attempt took, in whole seconds: tells a server timeout from a
            // refusal.
            .map_err(|e| format!("{e} (after {} s)", attempt_started.elapsed().as_secs()));
        drop(permit);
        match result {
            Ok(socket) => {
                outcome.connected = true;
                outcome.handshake_us = order.started.elapsed().as_micros() as u64;
                return (Some(socket), outcome);
            }
            Err(error) => {
                outcome.errors.push(error);
                if attempt < *retries {
                    let backoff = Duration::from_millis(200 << attempt.min(4));
                    tokio::time::sleep(backoff.min(Duration::from_secs(2))).await;
                }
            }
        }
    }
    (None, outcome)
}

fn metadata(config: &WorkerConfig, index: usize) -> String {
    let global = config.first + index;
    let mut value = Map::new();
    value.insert("robotName".to_owned(), Value::from(robot_name(global)));
    value.insert(
        "robotAddress".to_owned(),
        Value::from(robot_address(&config.prefix, global)),
    );
    if config.extended {
        value.insert(
            "protocol".to_owned(),
            Value::from(EXTENDED_PROTOCOL_VERSION),
        );
    }
    RobotFrame::new(config.dialect, RobotMessage::MetaData(Value::Object(value))).encode()
}

/// TCP from the worker's source address, the WebSocket upgrade, the metadata, and for an
/// extended robot its `registered`.
async fn open(index: usize, shared: &Shared) -> std::result::Result<Ws, String> {
    let config = &shared.config;
    let socket = bind(config.source)?;
    let stream = socket
        .connect(config.server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{}{}", config.server, config.path);
    let (mut socket, _) = client_async_with_config(url, stream, Some(socket_config()))
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    socket
        .send(Message::text(metadata(config, index)))
        .await
        .map_err(|e| format!("metadata: {e}"))?;
    if !config.extended {
        return Ok(socket);
    }
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let received_us = now_us();
                match parse_server_frame(text.as_str()) {
                    Ok((_, ServerMessage::Registered { .. })) => return Ok(socket),
                    Ok((_, ServerMessage::DeclineMetaData)) => {
                        return Err("registration: metadata declined".to_owned());
                    }
                    Ok((_, ServerMessage::Error { code, .. })) => {
                        return Err(format!("registration: error {code}"));
                    }
                    Ok((_, ServerMessage::Notification { package, job_id })) => {
                        package_received(index, shared, &mut socket, job_id, &package, received_us)
                            .await;
                    }
                    Err(_) => return Err("registration: unreadable frame".to_owned()),
                }
            }
            Some(Ok(Message::Ping(_))) => {
                shared.pings[index].fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!(
                    "registration: closed ({})",
                    close_reason(frame.as_ref())
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("registration: {e}")),
            None => return Err("registration: connection ended".to_owned()),
        }
    }
}

/// The next local port to try. Each worker has its source address to itself, so it hands out
/// ports itself: binding an explicit port costs the kernel a lookup, while `bind(ip, 0)` searches
/// for a free port and grows slow with thousands of sockets on one address (quadratically with
/// `SO_REUSEADDR`: 4 s for the last 4,000 of 9,000 sockets, measured here).
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);
const FIRST_PORT: u32 = 10_000;
const PORTS: u32 = 65_535 - FIRST_PORT;

/// A socket bound to `source` on a free port (one in TIME_WAIT or in use is skipped).
fn bind(source: IpAddr) -> std::result::Result<TcpSocket, String> {
    for _ in 0..256 {
        let port = FIRST_PORT + NEXT_PORT.fetch_add(1, Ordering::Relaxed) % PORTS;
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        match socket.bind(SocketAddr::new(source, port as u16)) {
            Ok(()) => return Ok(socket),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(format!("bind {source}: {e}")),
        }
    }
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    Ok(socket)
}

fn close_reason(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) => format!("close {}", u16::from(frame.code)),
        None => "close without code".to_owned(),
    }
}

async fn session(
    index: usize,
    shared: &Shared,
    mut socket: Ws,
    orders: &mut watch::Receiver<Order>,
    served: &mut u64,
) -> End {
    loop {
        tokio::select! {
            changed = orders.changed() => {
                if changed.is_err() {
                    return close(socket).await;
                }
                let order = orders.borrow_and_update().clone();
                match order.action {
                    Action::Drop => return End::Dropped,
                    Action::Shutdown => return close(socket).await,
                    Action::Connect { upto, .. } if order.generation > *served && index < upto => {
                        *served = order.generation;
                        let _ = shared.outcomes.send(Outcome {
                            generation: order.generation,
                            connected: true,
                            already: true,
                            handshake_us: 0,
                            errors: Vec::new(),
                        });
                    }
                    _ => {}
                }
            }
            message = socket.next() => {
                let received_us = now_us();
                let reason = match message {
                    Some(Ok(Message::Text(text))) => {
                        match parse_server_frame(text.as_str()) {
                            Ok((_, ServerMessage::Notification { package, job_id })) => {
                                package_received(index, shared, &mut socket, job_id, &package, received_us).await;
                            }
                            Ok((_, ServerMessage::Registered { .. })) => {}
                            Ok((_, ServerMessage::DeclineMetaData)) => {
                                bump(&shared.problems, "metadata declined".to_owned());
                            }
                            Ok((_, ServerMessage::Error { code, .. })) => {
                                bump(&shared.problems, format!("server error message {code}"));
                            }
                            Err(_) => bump(&shared.problems, "unreadable frame".to_owned()),
                        }
                        continue;
                    }
                    Some(Ok(Message::Ping(_))) => {
                        shared.pings[index].fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Some(Ok(Message::Close(frame))) => close_reason(frame.as_ref()),
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => format!("error: {error}"),
                    None => "connection ended without a close frame".to_owned(),
                };
                shared.unexpected_drops.fetch_add(1, Ordering::Relaxed);
                bump(&shared.drop_reasons, reason);
                return End::Lost;
            }
        }
    }
}

async fn package_received(
    index: usize,
    shared: &Shared,
    socket: &mut Ws,
    job_id: i64,
    package: &Map<String, Value>,
    received_us: i64,
) {
    let config = &shared.config;
    let due_us = package.get("due_us").and_then(Value::as_i64);
    if let Ok(mut deliveries) = shared.deliveries.lock() {
        deliveries.push(Delivery {
            job_id,
            due_us,
            received_us,
            robot: u32::try_from(config.first + index).unwrap_or(u32::MAX),
        });
    }
    shared.delivered.fetch_add(1, Ordering::Relaxed);
    if config.extended {
        let ack = RobotFrame::new(config.dialect, RobotMessage::Ack { job_id }).encode();
        match socket.send(Message::text(ack)).await {
            Ok(()) => {
                shared.acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => bump(&shared.problems, format!("ack not sent: {e}")),
        }
    }
    if config.report {
        let report = JobReport {
            job_id,
            status: ReportStatus::Success,
            message: None,
        };
        let frame =
            RobotFrame::new(config.dialect, RobotMessage::Message(report.to_value())).encode();
        match socket.send(Message::text(frame)).await {
            Ok(()) => {
                shared.reports.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => bump(&shared.problems, format!("report not sent: {e}")),
        }
    }
}

async fn close(mut socket: Ws) -> End {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let closing = async {
        socket.close(Some(frame)).await.ok()?;
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        Some(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    End::Shutdown
}
