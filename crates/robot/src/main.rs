//! `rpa-robot`: a command-line robot for demos, end-to-end tests and load tests.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rpa_robot::{Dialect, Event, Robot, RobotConfig, RobotError};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The field robot waits 1 s before its first reconnection and doubles up to 30 s.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often the ping watchdog looks at the ping count.
const WATCHDOG_TICK: Duration = Duration::from_secs(1);

/// A robot for the RPA orchestrator: registers, prints one JSON line per event on stdout, and
/// reports on each package it receives.
///
/// Output lines:
///   {"event":"registered","connection_id":..}     after each connection (extended robot)
///   {"event":"connected"}                          after each connection (--field)
///   {"event":"package","job_id":N,"package":{..}}  a package; with "duplicate":true when it
///                                                  already arrived (it is then skipped)
///   {"event":"declined","job_id":N,"package_name":..}
///   {"event":"reported","job_id":N,"status":"success"|"failure"}
///   {"event":"registered","connection_id":..,"ping_interval_ms":..,"ack_timeout_ms":..}
///   {"event":"metadata_declined"}
///   {"event":"error","code":..,"message":..}       the server found a frame bad
///   {"event":"bad_frame","error":..}               a server frame the robot cannot read
///   {"event":"closed","code":N|null,"reason":..}
///   {"event":"ping_timeout"}
///   {"event":"reconnecting","delay_ms":N,"reason":..}
///
/// Exit status: 0 after --exit-after packages or on Ctrl-C/SIGTERM; 1 when the connection
/// fails or drops (unless --reconnect) or the server declines the metadata; 2 on bad usage.
#[derive(Debug, Parser)]
#[command(name = "rpa-robot", version, verbatim_doc_comment)]
struct Args {
    /// WebSocket URL of the orchestrator (ws:// only; the paths /, /ws and
    /// /api/robots/connect all reach the robot endpoint).
    #[arg(long, env = "RPA_ROBOT_URL", default_value = "ws://127.0.0.1:4000/")]
    url: String,
    /// Robot name, sent as robotName.
    #[arg(long)]
    name: String,
    /// Robot MAC address, sent as robotAddress (e.g. 001AFFDB45C2).
    #[arg(long)]
    address: String,
    /// Event key the robot writes: "_event" (the C# robot) or "event" (README era).
    #[arg(long, value_enum, default_value = "_event")]
    dialect: DialectArg,
    /// Behave like a field robot: do not announce the extended protocol ("protocol": 2), so no
    /// acknowledgements and no registered/error messages.
    #[arg(long)]
    field: bool,
    /// Send the metadata value as a JSON-encoded string, as old robots did.
    #[arg(long)]
    metadata_as_string: bool,
    /// The robot's user: a number is sent as "userID", anything else as "uuid".
    #[arg(long, value_name = "ID|UUID", allow_hyphen_values = true)]
    user: Option<String>,
    /// What to report for each package received (as a job report message).
    #[arg(long, value_enum, default_value = "success")]
    report: ReportArg,
    /// Decline the first N packages ("Decline pkg reception") instead of running them; the
    /// server resends a declined package.
    #[arg(long, value_name = "N", default_value_t = 0)]
    decline_first: u64,
    /// Exit (status 0) after running N packages; declined packages and duplicates do not
    /// count. 0 exits right after registering.
    #[arg(long, value_name = "N")]
    exit_after: Option<u64>,
    /// When the connection fails or drops, reconnect with back-off (1 s doubling to 30 s), as
    /// the field robot does, instead of exiting.
    #[arg(long)]
    reconnect: bool,
    /// With --reconnect: reconnect when no ping arrived for this long, as the field robot
    /// does (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    ping_timeout: u64,
    /// Extended robots: do not acknowledge packages (to exercise the server's resends).
    #[arg(long)]
    no_ack: bool,
    /// Token sent as "Authorization: Bearer <token>" on the upgrade request.
    #[arg(long, env = "RPA_ROBOT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DialectArg {
    #[value(name = "_event", alias = "underscore")]
    Underscore,
    #[value(name = "event", alias = "plain")]
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportArg {
    Success,
    Failure,
    None,
}

impl Args {
    fn robot_config(&self) -> RobotConfig {
        let mut config = RobotConfig::new(&self.url, &self.name, &self.address);
        config.dialect = match self.dialect {
            DialectArg::Underscore => Dialect::Underscore,
            DialectArg::Plain => Dialect::Plain,
        };
        config.extended = !self.field;
        config.metadata_as_string = self.metadata_as_string;
        config.auto_ack = !self.no_ack;
        config.token = self.token.clone();
        config.user = self.user.as_deref().map(|user| match user.parse::<i64>() {
            Ok(number) => Value::from(number),
            Err(_) => Value::from(user),
        });
        config
    }

    fn ping_timeout(&self) -> Option<Duration> {
        (self.reconnect && self.ping_timeout > 0).then(|| Duration::from_secs(self.ping_timeout))
    }
}

/// Why serving a connection stopped.
enum Stop {
    /// --exit-after reached.
    Done,
    /// The connection is gone; reconnecting may help.
    Dropped(String),
    /// Reconnecting would not help.
    Fatal(String),
}

#[derive(Debug, Default)]
struct Progress {
    declined: u64,
    ran: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rpa-robot: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rpa-robot: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let mut robot = None;
    // Biased: the signal handlers are installed before the robot starts connecting.
    let result = tokio::select! {
        biased;
        () = shutdown_signal() => Ok(()),
        result = drive(args, &mut robot) => result,
    };
    if let Some(robot) = robot {
        // Best effort: the server may be gone already.
        let _ = robot.close().await;
    }
    result
}

/// Connects, serves, and reconnects when asked to; the robot lives in `slot` so that the
/// caller can close it whenever this future is dropped.
async fn drive(args: &Args, slot: &mut Option<Robot>) -> Result<(), String> {
    let mut progress = Progress::default();
    let mut delay = FIRST_RETRY;
    let mut retry_reason: Option<String> = None;
    loop {
        if let Some(reason) = retry_reason.take() {
            if !args.reconnect {
                return Err(reason);
            }
            emit(json!({"event": "reconnecting", "delay_ms": delay.as_millis(), "reason": reason}));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
        let connected = match slot.as_mut() {
            Some(robot) => robot.reconnect().await,
            None => Robot::connect(args.robot_config())
                .await
                .map(|robot| *slot = Some(robot)),
        };
        let robot = match (connected, slot.as_mut()) {
            (Ok(()), Some(robot)) => robot,
            (Err(error @ (RobotError::MetadataDeclined | RobotError::Config(_))), _) => {
                return Err(error.to_string());
            }
            (Err(error), _) => {
                retry_reason = Some(error.to_string());
                continue;
            }
            (Ok(()), None) => return Err("no robot after connecting".to_owned()),
        };
        delay = FIRST_RETRY;
        match robot.connection_id() {
            Some(id) => emit(json!({"event": "registered", "connection_id": id})),
            None => emit(json!({"event": "connected"})),
        }
        if args.exit_after == Some(0) {
            return Ok(());
        }
        match serve(args, robot, &mut progress).await {
            Stop::Done => return Ok(()),
            Stop::Fatal(message) => return Err(message),
            Stop::Dropped(reason) => retry_reason = Some(reason),
        }
    }
}

/// Handles events until the connection ends or there is nothing left to do.
async fn serve(args: &Args, robot: &mut Robot, progress: &mut Progress) -> Stop {
    let ping_timeout = args.ping_timeout();
    let mut pings = robot.pings();
    let mut last_ping = Instant::now();
    loop {
        let next = match ping_timeout {
            None => robot.next_event().await.map(Some),
            Some(limit) => {
                let next = robot.next_event_timeout(WATCHDOG_TICK).await;
                if robot.pings() != pings {
                    pings = robot.pings();
                    last_ping = Instant::now();
                }
                if matches!(next, Ok(None)) && last_ping.elapsed() >= limit {
                    emit(json!({"event": "ping_timeout"}));
                    return Stop::Dropped(format!("no ping for {} s", limit.as_secs()));
                }
                next
            }
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(RobotError::Protocol(error)) => {
                emit(json!({"event": "bad_frame", "error": error}));
                continue;
            }
            Err(error) => return Stop::Dropped(error.to_string()),
        };
        match event {
            Event::Package { job_id, package } => {
                if let Err(stop) = handle_package(args, robot, progress, job_id, package).await {
                    return stop;
                }
                if args.exit_after.is_some_and(|limit| progress.ran >= limit) {
                    return Stop::Done;
                }
            }
            Event::MetadataDeclined => {
                emit(json!({"event": "metadata_declined"}));
                return Stop::Fatal("the server declined the robot's metadata".to_owned());
            }
            Event::Registered {
                connection_id,
                ping_interval_ms,
                ack_timeout_ms,
            } => emit(json!({
                "event": "registered",
                "connection_id": connection_id,
                "ping_interval_ms": ping_interval_ms,
                "ack_timeout_ms": ack_timeout_ms,
            })),
            Event::ServerError { code, message } => {
                emit(json!({"event": "error", "code": code, "message": message}));
            }
            Event::Closed { code, reason } => {
                emit(json!({"event": "closed", "code": code, "reason": reason}));
                let code = code.map_or_else(|| "none".to_owned(), |code| code.to_string());
                return Stop::Dropped(format!("the connection closed (code {code}) {reason}"));
            }
        }
    }
}

async fn handle_package(
    args: &Args,
    robot: &mut Robot,
    progress: &mut Progress,
    job_id: i64,
    package: serde_json::Map<String, Value>,
) -> Result<(), Stop> {
    let duplicate = robot.is_duplicate(job_id);
    let package_name = package
        .get("package_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut line = json!({"event": "package", "job_id": job_id, "package": package});
    if duplicate {
        line["duplicate"] = Value::Bool(true);
    }
    emit(line);
    if duplicate {
        return Ok(());
    }
    let dropped = |error: RobotError| Stop::Dropped(error.to_string());
    if progress.declined < args.decline_first {
        robot.decline(&package_name).await.map_err(dropped)?;
        progress.declined += 1;
        emit(json!({"event": "declined", "job_id": job_id, "package_name": package_name}));
        return Ok(());
    }
    let status = match args.report {
        ReportArg::Success => Some((true, None)),
        ReportArg::Failure => Some((false, Some("failed on purpose: rpa-robot --report failure"))),
        ReportArg::None => None,
    };
    if let Some((success, message)) = status {
        robot
            .report(job_id, success, message)
            .await
            .map_err(dropped)?;
        let status = if success { "success" } else { "failure" };
        emit(json!({"event": "reported", "job_id": job_id, "status": status}));
    }
    progress.ran += 1;
    Ok(())
}

/// One JSON object per line; a closed stdout is not a reason to stop the robot.
fn emit(line: Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Ctrl-C, or SIGTERM on Unix. When a handler cannot be installed, it never resolves.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(error) => {
                eprintln!("rpa-robot: cannot watch SIGTERM: {error}");
                return ctrl_c().await;
            }
        };
        tokio::select! {
            () = ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("rpa-robot: cannot watch Ctrl-C: {error}");
        std::future::pending::<()>().await;
    }
}
