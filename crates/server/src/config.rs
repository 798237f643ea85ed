//! The server's settings, parsed once by the binary and passed down. Every field has a default
//! (see [`Config::default`]) that serves a fresh checkout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;

/// Where the database lives: the store's own description of it.
pub use rpa_store::Location as Database;

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
        }
    }
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
    pub limits: Limits,
    pub access: crate::http::auth::Access,
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
            log_retention_days: 30,
            job_retention_days: None,
            retention_interval: Duration::from_secs(3600),
            min_schedule_interval: Duration::from_secs(1),
            max_database_size: None,
            sync_package_files: false,
            instance_lease: Duration::from_secs(15),
            limits: Limits::default(),
            access: crate::http::auth::Access::default(),
        }
    }
}

/// A setting that cannot be read, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingError(pub String);

/// Reads a duration such as `10s`, `250ms`, `2m`, `1h`, `1d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, SettingError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| SettingError(format!("{text:?} is not a duration (try 10s, 500ms, 2m)")))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(SettingError(format!(
                "unknown duration unit {other:?} in {text:?} (use ms, s, m, h or d)"
            )));
        }
    };
    let seconds = value * scale;
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(SettingError(format!("{text:?} is out of range")));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Reads a size such as `64KiB`, `1MiB`, `65536`.
pub fn parse_size(text: &str) -> Result<usize, SettingError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| SettingError(format!("{text:?} is not a size (try 64KiB, 1MiB)")))?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(SettingError(format!(
                "unknown size unit {other:?} in {text:?} (use B, KiB, MiB or GiB)"
            )));
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| SettingError(format!("{text:?} is too large")))
}

/// Reads `sqlite://PATH` (relative), `sqlite:///PATH` (absolute), a bare path, or a
/// `postgres://` (`postgresql://`) URL when this build has the PostgreSQL backend.
pub fn parse_database(text: &str) -> Result<Database, SettingError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SettingError("the database location is empty".to_owned()));
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let database = Database::Postgres(text.to_owned());
        if !database.supported() {
            return Err(SettingError(
                "this build has no PostgreSQL backend; build it with `cargo build --release \
                 --features postgres` (see the README), or use sqlite://PATH"
                    .to_owned(),
            ));
        }
        return Ok(database);
    }
    if let Some(rest) = text.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() || path == ":memory:" {
            return Err(SettingError(format!(
                "{text:?} names no file (an in-memory database would lose every job)"
            )));
        }
        return Ok(Database::Sqlite(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(SettingError(format!(
            "unknown database scheme {scheme:?}; use sqlite://PATH or postgres://..."
        )));
    }
    Ok(Database::Sqlite(PathBuf::from(text)))
}

/// Reads an IANA time-zone name.
pub fn parse_timezone(text: &str) -> Result<Tz, SettingError> {
    let name = text.trim().trim_start_matches(':');
    name.parse::<Tz>().map_err(|_| {
        SettingError(format!(
            "{text:?} is not an IANA time zone (e.g. Europe/Berlin)"
        ))
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
    fn time_zones() {
        assert_eq!(parse_timezone("Europe/Berlin"), Ok(Tz::Europe__Berlin));
        assert_eq!(parse_timezone(":UTC"), Ok(Tz::UTC));
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
