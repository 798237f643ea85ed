//! The server's settings, parsed once by the binary and passed down.
//!
//! [`Config::default`] is the one place defaults live: a fresh checkout runs on them, and the
//! binary's flags show and use them. [`Config::validate`] holds the checks that no single
//! setting can make on its own; [`crate::Server::start`] runs it, so an embedding service gets
//! them too. The `parse_*` functions read settings written as text (flags, environment) and
//! the `format_*` functions write them back the same way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;

/// Where the database lives: the store's own description of it.
pub use rpa_store::Location as Database;

/// An address range, as `--webhook-deny` takes it (`10.0.0.0/8`, `fc00::/7`).
pub use ipnet::IpNet;

/// Sizes and rates that bound what the outside world can make the server hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest WebSocket message a robot may send (bytes); larger closes with 1009.
    pub max_message: usize,
    /// Largest single WebSocket frame (bytes).
    pub max_frame: usize,
    /// Frames queued for one robot before further sendings to it are refused.
    pub outbound_queue: usize,
    /// Bytes the WebSocket reads at a time; what an idle robot costs depends on it.
    pub read_buffer: usize,
    /// Bytes of unsent frames one connection may buffer before it counts as too slow.
    pub write_buffer: usize,
    /// How long one write to a robot may take before the robot counts as too slow.
    pub write_timeout: Duration,
    /// Largest REST request body (bytes); larger is refused with 413.
    pub max_body: usize,
    /// Largest page a listing returns.
    pub max_page: usize,
    /// Bad frames a connection may send within [`Limits::bad_frame_window`] before it is closed
    /// with 1008.
    pub bad_frames: u32,
    pub bad_frame_window: Duration,
    /// Robot frames a connection may send per second on average ...
    pub robot_rate: u32,
    /// ... and in a burst. A robot that keeps sending faster is disconnected with 1008.
    pub robot_burst: u32,
    /// Open connections one source address may hold; 0 is unlimited. Robots behind a gateway
    /// all come from its address.
    pub connections_per_ip: usize,
    /// Largest HTTP request head (request line and headers), bytes.
    pub max_header_bytes: usize,
    /// How long a client may take to send its request head.
    pub header_timeout: Duration,
    /// How long a client may take to send a request body, from the end of its head; a body
    /// that does not arrive in time gets 408 and its connection is closed.
    pub body_timeout: Duration,
    /// Bytes of request bodies held across all connections at once (a body is charged at its
    /// declared length when its head arrives, a chunked one as it arrives); beyond it new
    /// bodies get 503 with `Retry-After`.
    pub max_inflight_body: usize,
    /// Open connections in all (HTTP and robots); beyond it a new connection is accepted and
    /// closed at once. The default leaves [`FD_RESERVE`] descriptors of the process's file
    /// limit for the database, the logs and the package files.
    pub max_connections: usize,
    /// Messages kept per robot; a new one beyond it drops the robot's oldest.
    pub max_messages_per_robot: u32,
    /// How long a robot connection may go without valid metadata after its upgrade before it
    /// is closed with 1008.
    pub metadata_timeout: Duration,
}

/// File descriptors the default [`Limits::max_connections`] leaves for everything but
/// connections: the database and its pool, the log files, package files being written.
pub const FD_RESERVE: usize = 256;

/// The process's file limit (`RLIMIT_NOFILE`, the soft one) less [`FD_RESERVE`], at least 1.
pub fn default_max_connections() -> usize {
    open_file_limit()
        .saturating_sub(FD_RESERVE as u64)
        .clamp(1, usize::MAX as u64) as usize
}

/// The soft limit on open files; 1024 (the usual default) when it cannot be read.
fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives here.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if read != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return if read == 0 { u64::MAX } else { 1024 };
    }
    limit.rlim_cur
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 64 * 1024,
            max_frame: 64 * 1024,
            outbound_queue: 256,
            read_buffer: 1024,
            write_buffer: 256 * 1024,
            write_timeout: Duration::from_secs(10),
            max_body: 1024 * 1024,
            max_page: 500,
            bad_frames: 20,
            bad_frame_window: Duration::from_secs(10),
            robot_rate: 20,
            robot_burst: 100,
            connections_per_ip: 10_000,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_inflight_body: 64 * 1024 * 1024,
            max_connections: default_max_connections(),
            max_messages_per_robot: 1000,
            metadata_timeout: Duration::from_secs(30),
        }
    }
}

/// Which robots must present a credential of their own (docs/SECURITY.md). An address that has
/// a credential is protected in either mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RobotAuth {
    /// Addresses without credentials register as before (with `--robot-token` when set).
    #[default]
    Open,
    /// Every robot needs a credential of its own; the shared robot token registers no one.
    Enrolled,
}

impl RobotAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            RobotAuth::Open => "open",
            RobotAuth::Enrolled => "enrolled",
        }
    }
}

/// Who may call what. Tokens are compared in constant time and never logged (see
/// `http::auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Tokens accepted on the API and the old routes; none: the API is open. Several may be
    /// valid at once, so a token can be replaced without downtime.
    pub api_tokens: Vec<String>,
    /// Tokens accepted on the robot WebSocket upgrade; none: robots need none.
    pub robot_tokens: Vec<String>,
    /// Browser origins allowed; none: any origin.
    pub allowed_origins: Vec<String>,
    /// Which robots need a credential of their own.
    pub robot_auth: RobotAuth,
}

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: Database,
    pub packages_dir: PathBuf,
    pub log_dir: PathBuf,
    /// `info`, or directives such as `info,rpa_server::http::ws=debug`.
    pub log_level: String,
    /// Whether log lines also go to standard error.
    pub log_to_stderr: bool,
    /// How often a registered robot is pinged; 3 silent intervals make a connection dead.
    pub ping_interval: Duration,
    /// The zone of schedules that name none.
    pub timezone: Tz,
    /// A job first sent later than this after its `run_at` fails as missed; `None`: it runs late.
    pub misfire_grace: Option<Duration>,
    /// Sendings of one job at most, the first included.
    pub max_delivery_attempts: u32,
    /// How long an extended robot has to acknowledge a package before it is sent again.
    pub ack_timeout: Duration,
    /// A robot sent a job that is still unreported is busy for pool jobs this long
    /// (docs/POOLS.md); the job's status does not change.
    pub pool_busy_timeout: Duration,
    /// A job sent and unreported this long fails ("no report within ..."), which frees its
    /// robot; `None`: never.
    pub job_report_timeout: Option<Duration>,
    /// Daily log files older than this many days are deleted (0 keeps them all).
    pub log_retention_days: u32,
    /// Finished jobs, their events, robot messages and schedule events older than this many
    /// days are purged; `None` keeps them all.
    pub job_retention_days: Option<u32>,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Recurring schedules that fire more often than this are refused.
    pub min_schedule_interval: Duration,
    /// The largest the database may grow; beyond it triggers fail with 507 until space is made.
    pub max_database_size: Option<u64>,
    /// Whether each package file is flushed to disk before it counts as written. Off: the
    /// job itself is durable in the database, and the file follows within the OS's flush
    /// interval.
    pub sync_package_files: bool,
    /// Several instances (PostgreSQL): how long an instance that stops renewing its lease is
    /// still taken for alive. Past it, another instance takes its robots offline and sends
    /// again what it had claimed but not confirmed.
    pub instance_lease: Duration,
    /// Events are streamed this long; older ones are trimmed from the stream (a job's stay as
    /// its history, with the job).
    pub event_retention: Duration,
    /// A robot offline this long is told once per outage as `robot.unreachable`; zero tells
    /// nothing.
    pub alert_robot_offline_after: Duration,
    /// A job due this long and never sent is told once as `job.overdue`; zero tells nothing.
    pub alert_job_overdue_after: Duration,
    /// A webhook is disabled when the oldest event it owes was first attempted this long ago.
    pub webhook_retry_for: Duration,
    /// Address ranges webhook deliveries may not reach, besides the link-local and cloud
    /// metadata addresses that are always refused.
    pub webhook_deny: Vec<IpNet>,
    /// PEM certificates trusted for HTTPS receivers besides the public ones (an internal CA).
    pub webhook_ca_file: Option<PathBuf>,
    pub limits: Limits,
    pub access: Access,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 4000)),
            database: Database::Sqlite(PathBuf::from("data/socket-server.db")),
            packages_dir: PathBuf::from("packages"),
            log_dir: PathBuf::from("serverLogs"),
            log_level: "info".to_owned(),
            log_to_stderr: true,
            ping_interval: Duration::from_secs(10),
            timezone: Tz::UTC,
            misfire_grace: None,
            max_delivery_attempts: 5,
            ack_timeout: Duration::from_secs(30),
            pool_busy_timeout: Duration::from_secs(15 * 60),
            job_report_timeout: None,
            log_retention_days: 30,
            job_retention_days: None,
            retention_interval: Duration::from_secs(3600),
            min_schedule_interval: Duration::from_secs(1),
            max_database_size: None,
            sync_package_files: false,
            instance_lease: Duration::from_secs(15),
            event_retention: Duration::from_secs(7 * 86_400),
            alert_robot_offline_after: Duration::from_secs(300),
            alert_job_overdue_after: Duration::from_secs(300),
            webhook_retry_for: Duration::from_secs(86_400),
            webhook_deny: Vec::new(),
            webhook_ca_file: None,
            limits: Limits::default(),
            access: Access::default(),
        }
    }
}

/// Smallest `read_buffer`: tungstenite needs room for a frame header and some payload.
const MIN_READ_BUFFER: usize = 256;

impl Config {
    /// Checks what no single setting can: settings that contradict each other, tokens that
    /// could never be presented, and values the server cannot run with (a zero interval, a
    /// count out of its range). The binary's flags refuse most of these as they are read;
    /// [`crate::Server::start`] checks again for an embedding service.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        if limits.max_frame > limits.max_message {
            return Err(ConfigError::FrameExceedsMessage);
        }
        check_tokens("--api-token", &self.access.api_tokens)?;
        check_tokens("--robot-token", &self.access.robot_tokens)?;
        // Credentials are enrolled through the API: an open API would let anyone enrol any
        // robot and lock the real one out.
        if self.access.robot_auth == RobotAuth::Enrolled && self.access.api_tokens.is_empty() {
            return Err(ConfigError::EnrolledWithoutApiToken);
        }
        if self.max_database_size.is_some() && matches!(self.database, Database::Postgres(_)) {
            return Err(ConfigError::SqliteOnly {
                setting: "--max-database-size",
            });
        }
        if limits.read_buffer < MIN_READ_BUFFER {
            return Err(ConfigError::TooSmall {
                setting: "--read-buffer",
                min: MIN_READ_BUFFER,
            });
        }
        if limits.max_connections == 0 {
            return Err(ConfigError::Zero {
                setting: "--max-connections",
            });
        }
        if limits.max_inflight_body < limits.max_body {
            return Err(ConfigError::InflightBelowBody);
        }
        if !self.database.supported() {
            return Err(ConfigError::Database(SettingError::NoPostgresBackend));
        }
        for (setting, duration) in [
            ("--ping-interval", self.ping_interval),
            ("--instance-lease", self.instance_lease),
            ("--event-retention", self.event_retention),
            ("--webhook-retry-for", self.webhook_retry_for),
            ("--ack-timeout", self.ack_timeout),
            ("--pool-busy-timeout", self.pool_busy_timeout),
            ("--retention-interval", self.retention_interval),
            ("--write-timeout", limits.write_timeout),
            ("--header-timeout", limits.header_timeout),
            ("--body-timeout", limits.body_timeout),
            ("--metadata-timeout", limits.metadata_timeout),
        ] {
            if duration.is_zero() {
                return Err(ConfigError::Zero { setting });
            }
        }
        for (setting, value, min, max) in [
            (
                "--max-delivery-attempts",
                u64::from(self.max_delivery_attempts),
                1,
                100,
            ),
            (
                "--outbound-queue",
                as_u64(limits.outbound_queue),
                1,
                100_000,
            ),
            ("--max-page", as_u64(limits.max_page), 1, 10_000),
            (
                "--robot-rate",
                u64::from(limits.robot_rate),
                1,
                u64::from(u32::MAX),
            ),
            (
                "--robot-burst",
                u64::from(limits.robot_burst),
                1,
                u64::from(u32::MAX),
            ),
            (
                "--max-messages-per-robot",
                u64::from(limits.max_messages_per_robot),
                1,
                1_000_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::OutOfRange { setting, min, max });
            }
        }
        Ok(())
    }
}

fn as_u64(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Tokens are sent in a header: they must not be empty, and only printable ASCII without
/// spaces survives every client and proxy unchanged.
fn check_tokens(setting: &'static str, tokens: &[String]) -> Result<(), ConfigError> {
    if tokens.iter().any(String::is_empty) {
        return Err(ConfigError::EmptyToken { setting });
    }
    if tokens
        .iter()
        .any(|token| !token.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ConfigError::UnprintableToken { setting });
    }
    Ok(())
}

/// A [`Config`] the server cannot run with. The text names the setting by its flag, as the
/// operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("--max-frame-size: must not exceed --max-message-size")]
    FrameExceedsMessage,
    #[error("--max-inflight-body: must be at least --max-body")]
    InflightBelowBody,
    #[error(
        "--robot-auth: enrolled needs --api-token, or anyone could enrol credentials through \
         the open API"
    )]
    EnrolledWithoutApiToken,
    #[error("{setting}: a token must not be empty")]
    EmptyToken { setting: &'static str },
    #[error("{setting}: a token must be printable ASCII without spaces")]
    UnprintableToken { setting: &'static str },
    #[error(
        "{setting}: applies to SQLite only; on PostgreSQL, space is the database server's to \
         manage"
    )]
    SqliteOnly { setting: &'static str },
    #[error("{setting}: must be at least {min} bytes")]
    TooSmall { setting: &'static str, min: usize },
    #[error("{setting}: must be more than zero")]
    Zero { setting: &'static str },
    #[error("{setting}: must be from {min} to {max}")]
    OutOfRange {
        setting: &'static str,
        min: u64,
        max: u64,
    },
    /// A database this build cannot open.
    #[error("--database: {0}")]
    Database(SettingError),
}

impl ConfigError {
    /// The flag of the setting at fault, e.g. `--read-buffer`.
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigError::FrameExceedsMessage => "--max-frame-size",
            ConfigError::InflightBelowBody => "--max-inflight-body",
            ConfigError::EnrolledWithoutApiToken => "--robot-auth",
            ConfigError::EmptyToken { setting }
            | ConfigError::UnprintableToken { setting }
            | ConfigError::SqliteOnly { setting }
            | ConfigError::TooSmall { setting, .. }
            | ConfigError::Zero { setting }
            | ConfigError::OutOfRange { setting, .. } => setting,
            ConfigError::Database(_) => "--database",
        }
    }
}

/// A setting written as text that cannot be read, and why. The text does not name the
/// setting: whoever read it does (clap: `invalid value 'x' for '--flag'`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingError {
    #[error("{text:?} is not a duration (try 10s, 500ms, 2m)")]
    NotADuration { text: String },
    #[error("unknown duration unit {unit:?} in {text:?} (use ms, s, m, h or d)")]
    DurationUnit { unit: String, text: String },
    #[error("{text:?} is out of range")]
    DurationOutOfRange { text: String },
    #[error("must be more than zero")]
    Zero,
    #[error("{text:?} is not a size (try 64KiB, 1MiB)")]
    NotASize { text: String },
    #[error("unknown size unit {unit:?} in {text:?} (use B, KiB, MiB or GiB)")]
    SizeUnit { unit: String, text: String },
    #[error("{text:?} is too large")]
    SizeTooLarge { text: String },
    #[error("the database location is empty")]
    EmptyDatabase,
    #[error(
        "this build has no PostgreSQL backend; build it with `cargo build --release --features \
         postgres` (see the README), or use sqlite://PATH"
    )]
    NoPostgresBackend,
    #[error("{text:?} names no file (an in-memory database would lose every job)")]
    NoDatabaseFile { text: String },
    #[error("unknown database scheme {scheme:?}; use sqlite://PATH or postgres://...")]
    DatabaseScheme { scheme: String },
    #[error("{text:?} is not an address and port (e.g. 0.0.0.0:4000) or a port")]
    ListenAddress { text: String },
    #[error("{text:?} is not an IANA time zone (e.g. Europe/Berlin)")]
    TimeZone { text: String },
    #[error("{level:?} is not a log level (error, warn, info, debug, trace or off)")]
    LogLevel { level: String },
    #[error("{text:?} is not an address range (try 10.0.0.0/8 or fc00::/7)")]
    AddressRange { text: String },
    #[error("{text:?} is not a robot authentication mode (open or enrolled)")]
    RobotAuth { text: String },
}

/// Reads a robot authentication mode: `open` or `enrolled`.
pub fn parse_robot_auth(text: &str) -> Result<RobotAuth, SettingError> {
    [RobotAuth::Open, RobotAuth::Enrolled]
        .into_iter()
        .find(|mode| mode.as_str().eq_ignore_ascii_case(text.trim()))
        .ok_or_else(|| SettingError::RobotAuth {
            text: text.to_owned(),
        })
}

/// Reads a duration such as `10s`, `250ms`, `2m`, `1h`, `1d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, SettingError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| SettingError::NotADuration {
        text: text.to_owned(),
    })?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(SettingError::DurationUnit {
                unit: other.to_owned(),
                text: text.to_owned(),
            });
        }
    };
    let seconds = value * scale;
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(SettingError::DurationOutOfRange {
            text: text.to_owned(),
        });
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Writes a duration as [`parse_duration`] reads it, in the largest unit that holds it whole:
/// `10s`, `1h`, `250ms`, `1d`. Below a millisecond it is a decimal number of seconds.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() == 0 {
        return match seconds {
            0 => "0s".to_owned(),
            s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
            s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
            s if s.is_multiple_of(60) => format!("{}m", s / 60),
            s => format!("{s}s"),
        };
    }
    if duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{}ms", duration.as_millis());
    }
    let fraction = format!("{:09}", duration.subsec_nanos());
    format!("{seconds}.{}", fraction.trim_end_matches('0'))
}

/// Reads a size such as `64KiB`, `1MiB`, `65536`.
pub fn parse_size(text: &str) -> Result<usize, SettingError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number.parse().map_err(|_| SettingError::NotASize {
        text: text.to_owned(),
    })?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(SettingError::SizeUnit {
                unit: other.to_owned(),
                text: text.to_owned(),
            });
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| SettingError::SizeTooLarge {
            text: text.to_owned(),
        })
}

/// Writes a size as [`parse_size`] reads it, in the largest unit that holds it whole: `64KiB`,
/// `1MiB`, `100`.
pub fn format_size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(scale, _)| bytes != 0 && bytes.is_multiple_of(*scale))
        .map_or_else(
            || bytes.to_string(),
            |(scale, unit)| format!("{}{unit}", bytes / scale),
        )
}

/// Reads `sqlite://PATH` (relative), `sqlite:///PATH` (absolute), a bare path, or a
/// `postgres://` (`postgresql://`) URL when this build has the PostgreSQL backend.
pub fn parse_database(text: &str) -> Result<Database, SettingError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SettingError::EmptyDatabase);
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let database = Database::Postgres(text.to_owned());
        if !database.supported() {
            return Err(SettingError::NoPostgresBackend);
        }
        return Ok(database);
    }
    if let Some(rest) = text.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() || path == ":memory:" {
            return Err(SettingError::NoDatabaseFile {
                text: text.to_owned(),
            });
        }
        return Ok(Database::Sqlite(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(SettingError::DatabaseScheme {
            scheme: scheme.to_owned(),
        });
    }
    Ok(Database::Sqlite(PathBuf::from(text)))
}

/// Writes a database location as [`parse_database`] reads it: `sqlite://PATH` (which is
/// `sqlite:///PATH` for an absolute path). A PostgreSQL URL is written without its password,
/// so the text is fit for logs and `--help`, not for reading back.
pub fn format_database(database: &Database) -> String {
    match database {
        Database::Sqlite(path) => format!("sqlite://{}", path.display()),
        Database::Postgres(_) => database.to_string(),
    }
}

/// Reads an address range: `10.0.0.0/8`, `fc00::/7`, or a single address.
pub fn parse_address_range(text: &str) -> Result<IpNet, SettingError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| SettingError::AddressRange {
            text: text.to_owned(),
        })
}

/// Reads a listen address: `ADDR:PORT` (`0.0.0.0:4000`, `[::]:4000`), or a port alone, which
/// listens on every IPv4 address as the default does.
pub fn parse_listen(text: &str) -> Result<SocketAddr, SettingError> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    text.parse().map_err(|_| SettingError::ListenAddress {
        text: text.to_owned(),
    })
}

/// Reads an IANA time-zone name.
pub fn parse_timezone(text: &str) -> Result<Tz, SettingError> {
    let name = text.trim().trim_start_matches(':');
    name.parse::<Tz>().map_err(|_| SettingError::TimeZone {
        text: text.to_owned(),
    })
}

/// Checks log directives: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) and/or
/// `target=level` pairs, comma-separated.
pub fn parse_log_level(text: &str) -> Result<String, SettingError> {
    crate::logging::Directives::parse(text)?;
    Ok(text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("99999999999999999999MiB").is_err());
    }

    #[test]
    fn databases() {
        let sqlite = |p: &str| Ok(Database::Sqlite(PathBuf::from(p)));
        assert_eq!(parse_database("sqlite://data/x.db"), sqlite("data/x.db"));
        assert_eq!(
            parse_database("sqlite:///var/lib/x.db"),
            sqlite("/var/lib/x.db")
        );
        assert_eq!(parse_database("sqlite:data/x.db"), sqlite("data/x.db"));
        assert_eq!(parse_database("x.db"), sqlite("x.db"));
        assert!(parse_database("sqlite://:memory:").is_err());
        assert_eq!(
            parse_database("postgres://localhost/db").is_ok(),
            cfg!(feature = "postgres")
        );
        assert!(parse_database("mysql://localhost/db").is_err());
        assert!(parse_database("").is_err());
    }

    #[test]
    fn durations_and_sizes_are_written_as_they_are_read() {
        for (duration, text) in [
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(2 * 86_400), "2d"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(1500), "0.0015"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
        for (size, text) in [
            (65_536, "64KiB"),
            (1024, "1KiB"),
            (1 << 20, "1MiB"),
            (3 << 30, "3GiB"),
            (1536, "1536"),
            (0, "0"),
        ] {
            assert_eq!(format_size(size), text);
            assert_eq!(parse_size(text), Ok(size), "{text}");
        }
        let database = Database::Sqlite(PathBuf::from("/var/lib/x.db"));
        assert_eq!(format_database(&database), "sqlite:///var/lib/x.db");
        assert_eq!(parse_database(&format_database(&database)), Ok(database));
        let secret = Database::Postgres("postgres://user:secret@db/rpa".to_owned());
        assert!(!format_database(&secret).contains("secret"));
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    /// A valid configuration changed by `change`, validated.
    fn check(change: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut config = Config::default();
        change(&mut config);
        config.validate()
    }

    #[test]
    fn settings_that_contradict_each_other_are_refused_naming_the_flag() {
        let refused = check(|c| c.limits.max_frame = c.limits.max_message + 1).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "--max-frame-size: must not exceed --max-message-size"
        );
        assert_eq!(refused.setting(), "--max-frame-size");
        assert_eq!(check(|c| c.limits.max_frame = c.limits.max_message), Ok(()));

        let refused = check(|c| {
            c.database = Database::Postgres("postgres://db/rpa".to_owned());
            c.max_database_size = Some(1 << 30);
        })
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "--max-database-size: applies to SQLite only; on PostgreSQL, space is the database \
             server's to manage"
        );
        assert_eq!(check(|c| c.max_database_size = Some(1 << 30)), Ok(()));
    }

    #[test]
    fn tokens_must_be_printable_ascii_and_not_empty() {
        let empty = check(|c| c.access.api_tokens = vec!["a".into(), String::new()]);
        assert_eq!(
            empty.unwrap_err().to_string(),
            "--api-token: a token must not be empty"
        );
        for bad in ["x y", "x\ty", "clé"] {
            let refused = check(|c| c.access.robot_tokens = vec![bad.into()]).unwrap_err();
            assert_eq!(
                refused.to_string(),
                "--robot-token: a token must be printable ASCII without spaces",
                "{bad:?}"
            );
        }
        assert_eq!(
            check(|c| c.access.api_tokens = vec!["s3cret-~!".into(), "other".into()]),
            Ok(())
        );
    }

    #[test]
    fn enrolled_robots_need_an_api_token() {
        let refused = check(|c| c.access.robot_auth = RobotAuth::Enrolled).unwrap_err();
        assert_eq!(refused.setting(), "--robot-auth");
        assert!(
            refused
                .to_string()
                .starts_with("--robot-auth: enrolled needs --api-token")
        );
        assert_eq!(
            check(|c| {
                c.access.robot_auth = RobotAuth::Enrolled;
                c.access.api_tokens = vec!["operator-token".into()];
            }),
            Ok(())
        );
        assert_eq!(
            check(|c| c.limits.metadata_timeout = Duration::ZERO).map_err(|e| e.setting()),
            Err("--metadata-timeout")
        );
    }

    #[test]
    fn values_the_server_cannot_run_with_are_refused() {
        assert_eq!(
            check(|c| c.limits.read_buffer = 255)
                .unwrap_err()
                .to_string(),
            "--read-buffer: must be at least 256 bytes"
        );
        assert_eq!(check(|c| c.limits.read_buffer = 256), Ok(()));
        let zero = check(|c| c.instance_lease = Duration::ZERO).unwrap_err();
        assert_eq!(zero.to_string(), "--instance-lease: must be more than zero");
        assert_eq!(
            check(|c| c.limits.header_timeout = Duration::ZERO).map_err(|e| e.setting()),
            Err("--header-timeout")
        );
        assert_eq!(
            check(|c| c.max_delivery_attempts = 101)
                .unwrap_err()
                .to_string(),
            "--max-delivery-attempts: must be from 1 to 100"
        );
        assert_eq!(
            check(|c| c.limits.outbound_queue = 0).map_err(|e| e.setting()),
            Err("--outbound-queue")
        );
        assert_eq!(
            check(|c| c.limits.robot_burst = 0).map_err(|e| e.setting()),
            Err("--robot-burst")
        );
        // Zero is fine where it means "none" or "no minimum".
        assert_eq!(
            check(|c| {
                c.min_schedule_interval = Duration::ZERO;
                c.log_retention_days = 0;
                c.limits.connections_per_ip = 0;
            }),
            Ok(())
        );
    }

    #[test]
    fn a_database_this_build_cannot_open_is_refused() {
        let postgres = check(|c| c.database = Database::Postgres("postgres://db/rpa".into()));
        if cfg!(feature = "postgres") {
            assert_eq!(postgres, Ok(()));
        } else {
            let refused = postgres.unwrap_err();
            assert_eq!(refused.setting(), "--database");
            assert!(
                refused
                    .to_string()
                    .starts_with("--database: this build has no PostgreSQL")
            );
        }
    }

    #[test]
    fn address_ranges() {
        assert_eq!(
            parse_address_range(" 10.0.0.0/8 ").map(|net| net.to_string()),
            Ok("10.0.0.0/8".to_owned())
        );
        assert_eq!(
            parse_address_range("fd00::1").map(|net| net.to_string()),
            Ok("fd00::1/128".to_owned())
        );
        assert!(parse_address_range("10.0.0.0/33").is_err());
        assert!(parse_address_range("intranet").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("4100"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 4100)))
        );
        assert_eq!(
            parse_listen("127.0.0.1:4100"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 4100)))
        );
        assert!(parse_listen("[::1]:4100").is_ok());
        assert!(parse_listen("localhost").is_err());
        assert!(parse_listen("70000").is_err());
    }

    #[test]
    fn time_zones() {
        assert_eq!(parse_timezone("Europe/Berlin"), Ok(Tz::Europe__Berlin));
        assert_eq!(parse_timezone(":UTC"), Ok(Tz::UTC));
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
