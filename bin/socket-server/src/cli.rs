//! The command line: every setting as a flag with an environment variable and a default. The
//! defaults come from [`Config::default`], the one place they live; checks that involve more
//! than one flag are [`Config::validate`]'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use chrono_tz::Tz;
use clap::Parser;
use rpa_server::config::{
    Access, Database, IpNet, SettingError, format_database, format_duration, format_size,
    parse_address_range, parse_database, parse_duration, parse_listen, parse_log_level,
    parse_robot_auth, parse_size, parse_timezone,
};
use rpa_server::{Config, Limits, RobotAuth};

/// The defaults of every setting.
fn defaults() -> &'static Config {
    static DEFAULTS: OnceLock<Config> = OnceLock::new();
    DEFAULTS.get_or_init(Config::default)
}

/// A default as `--help` shows it and the flag's parser reads it back, e.g. `10s` or
/// `64KiB`: computed once from [`defaults`], for the `&'static str` clap wants.
macro_rules! shown {
    ($text:expr) => {{
        static TEXT: OnceLock<String> = OnceLock::new();
        TEXT.get_or_init(|| $text).as_str()
    }};
}

fn duration(text: &str) -> Result<Duration, SettingError> {
    parse_duration(text)
}

fn positive_duration(text: &str) -> Result<Duration, SettingError> {
    let value = parse_duration(text)?;
    if value.is_zero() {
        return Err(SettingError::Zero);
    }
    Ok(value)
}

fn size(text: &str) -> Result<usize, SettingError> {
    parse_size(text)
}

/// The robot orchestrator server: robots connect over WebSocket, jobs are triggered over REST.
#[derive(Debug, Parser)]
#[command(name = "socket-server", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    /// Address and port to listen on, HTTP and WebSocket alike (e.g. 127.0.0.1:4000), or a port
    /// alone for every address. Unset, SOCKET_SERVER_LISTEN, then PORT (a port alone) apply.
    #[arg(long, env = "SOCKET_SERVER_LISTEN", default_value = shown!(defaults().listen.to_string()), value_parser = parse_listen, value_name = "ADDR:PORT")]
    listen: SocketAddr,

    /// The database: sqlite://PATH (relative), sqlite:///PATH (absolute), a bare path, or
    /// postgres://USER:PASSWORD@HOST:PORT/NAME (builds with the `postgres` feature).
    #[arg(long, env = "DATABASE_URL", default_value = shown!(format_database(&defaults().database)), value_parser = parse_database, value_name = "URL")]
    database: Database,

    /// Folder of the package metadata files (created when missing).
    #[arg(
        long,
        env = "SOCKET_SERVER_PACKAGES_DIR",
        default_value_os_t = defaults().packages_dir.clone(),
        value_name = "DIR"
    )]
    packages_dir: PathBuf,

    /// Folder of the daily server logs (created when missing).
    #[arg(
        long,
        env = "SOCKET_SERVER_LOG_DIR",
        default_value_os_t = defaults().log_dir.clone(),
        value_name = "DIR"
    )]
    log_dir: PathBuf,

    /// Log level (error, warn, info, debug, trace) or directives like
    /// info,rpa_server::http::ws=debug.
    #[arg(long, env = "RUST_LOG", default_value_t = defaults().log_level.clone(), value_parser = parse_log_level, value_name = "LEVEL")]
    log_level: String,

    /// Also write log lines to standard error.
    #[arg(long, env = "SOCKET_SERVER_LOG_STDERR", default_value_t = defaults().log_to_stderr, action = clap::ArgAction::Set, value_name = "BOOL")]
    log_stderr: bool,

    /// How often registered robots are pinged; a robot silent for 3 intervals is dead.
    #[arg(long, env = "SOCKET_SERVER_PING_INTERVAL", default_value = shown!(format_duration(defaults().ping_interval)), value_parser = positive_duration, value_name = "DURATION")]
    ping_interval: Duration,

    /// Time zone of schedules that name none (IANA name, e.g. Europe/Berlin). Default: TZ
    /// (UTC0 or a value that names no zone: UTC), else the machine's zone, else UTC.
    #[arg(long, value_parser = parse_timezone, value_name = "ZONE")]
    timezone: Option<Tz>,

    /// A job first sent later than this after its run_at fails as missed. Default: it runs late.
    #[arg(long, env = "SOCKET_SERVER_MISFIRE_GRACE", value_parser = duration, value_name = "DURATION")]
    misfire_grace: Option<Duration>,

    /// Several instances on PostgreSQL: how long an instance that stops renewing its lease (it
    /// died, or lost the database) still counts as alive; then another one takes over its
    /// robots' unconfirmed sendings.
    #[arg(long, env = "SOCKET_SERVER_INSTANCE_LEASE", default_value = shown!(format_duration(defaults().instance_lease)), value_parser = positive_duration, value_name = "DURATION")]
    instance_lease: Duration,

    /// How long events are kept in the stream (GET /api/events, webhooks); a job's own history
    /// stays as long as the job.
    #[arg(long, env = "SOCKET_SERVER_EVENT_RETENTION", default_value = shown!(format_duration(defaults().event_retention)), value_parser = positive_duration, value_name = "DURATION")]
    event_retention: Duration,

    /// A robot offline this long is told once per outage as a robot.unreachable event (0: never).
    #[arg(long, env = "SOCKET_SERVER_ALERT_ROBOT_OFFLINE_AFTER", default_value = shown!(format_duration(defaults().alert_robot_offline_after)), value_parser = duration, value_name = "DURATION")]
    alert_robot_offline_after: Duration,

    /// A job due this long and still not sent is told once as a job.overdue event (0: never).
    #[arg(long, env = "SOCKET_SERVER_ALERT_JOB_OVERDUE_AFTER", default_value = shown!(format_duration(defaults().alert_job_overdue_after)), value_parser = duration, value_name = "DURATION")]
    alert_job_overdue_after: Duration,

    /// A webhook whose oldest owed event was first attempted this long ago, every attempt
    /// since failing, is disabled (and webhook.disabled is emitted).
    #[arg(long, env = "SOCKET_SERVER_WEBHOOK_RETRY_FOR", default_value = shown!(format_duration(defaults().webhook_retry_for)), value_parser = positive_duration, value_name = "DURATION")]
    webhook_retry_for: Duration,

    /// Address ranges webhook deliveries may not reach (comma-separated, e.g.
    /// 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7 when every receiver is public).
    /// Link-local and cloud metadata addresses are always refused.
    #[arg(
        long,
        env = "SOCKET_SERVER_WEBHOOK_DENY",
        value_delimiter = ',',
        value_parser = parse_address_range,
        value_name = "CIDR"
    )]
    webhook_deny: Vec<IpNet>,

    /// PEM file of certificates trusted for HTTPS webhook receivers besides the public ones
    /// (a company's internal CA).
    #[arg(long, env = "SOCKET_SERVER_WEBHOOK_CA_FILE", value_name = "FILE")]
    webhook_ca_file: Option<PathBuf>,

    /// Sendings of one job at most, the first included.
    #[arg(long, env = "SOCKET_SERVER_MAX_DELIVERY_ATTEMPTS", default_value_t = defaults().max_delivery_attempts, value_parser = clap::value_parser!(u32).range(1..=100), value_name = "N")]
    max_delivery_attempts: u32,

    /// A robot that was sent a job and has not reported it is busy for pool jobs this long
    /// (docs/POOLS.md); the job stays Executed.
    #[arg(long, env = "SOCKET_SERVER_POOL_BUSY_TIMEOUT", default_value = shown!(format_duration(defaults().pool_busy_timeout)), value_parser = positive_duration, value_name = "DURATION")]
    pool_busy_timeout: Duration,

    /// A job sent and not reported within this fails ("no report within ..."), freeing its
    /// robot; a later report is kept as a message. Default: never.
    #[arg(long, env = "SOCKET_SERVER_JOB_REPORT_TIMEOUT", value_parser = positive_duration, value_name = "DURATION")]
    job_report_timeout: Option<Duration>,

    /// How long an extended robot has to acknowledge a package before it is sent again.
    #[arg(long, env = "SOCKET_SERVER_ACK_TIMEOUT", default_value = shown!(format_duration(defaults().ack_timeout)), value_parser = positive_duration, value_name = "DURATION")]
    ack_timeout: Duration,

    /// Daily log files older than this many days are deleted (0 keeps them all).
    #[arg(
        long,
        env = "SOCKET_SERVER_LOG_RETENTION_DAYS",
        default_value_t = defaults().log_retention_days,
        value_name = "DAYS"
    )]
    log_retention_days: u32,

    /// Purge finished jobs, their events, robot messages and schedule events older than this
    /// many days. Default: keep them.
    #[arg(long, env = "SOCKET_SERVER_JOB_RETENTION_DAYS", value_name = "DAYS")]
    job_retention_days: Option<u32>,

    /// How often retention runs.
    #[arg(long, env = "SOCKET_SERVER_RETENTION_INTERVAL", default_value = shown!(format_duration(defaults().retention_interval)), value_parser = positive_duration, value_name = "DURATION")]
    retention_interval: Duration,

    /// Recurring schedules that fire more often than this are refused.
    #[arg(long, env = "SOCKET_SERVER_MIN_SCHEDULE_INTERVAL", default_value = shown!(format_duration(defaults().min_schedule_interval)), value_parser = duration, value_name = "DURATION")]
    min_schedule_interval: Duration,

    /// The largest the database may grow (e.g. 20GiB); beyond it triggers fail with 507 until
    /// space is made. Default: no limit but the disk.
    #[arg(long, env = "SOCKET_SERVER_MAX_DATABASE_SIZE", value_parser = size, value_name = "SIZE")]
    max_database_size: Option<usize>,

    /// Flush each package file to disk (files are written right after the job's commit, by a
    /// background writer). Off, the OS flushes them; the jobs themselves are always flushed.
    #[arg(long, env = "SOCKET_SERVER_SYNC_PACKAGE_FILES", default_value_t = defaults().sync_package_files, action = clap::ArgAction::Set, value_name = "BOOL")]
    sync_package_files: bool,

    /// Largest WebSocket message a robot may send; larger closes the connection with 1009.
    #[arg(long, env = "SOCKET_SERVER_MAX_MESSAGE_SIZE", default_value = shown!(format_size(defaults().limits.max_message)), value_parser = size, value_name = "SIZE")]
    max_message_size: usize,

    /// Largest single WebSocket frame a robot may send.
    #[arg(long, env = "SOCKET_SERVER_MAX_FRAME_SIZE", default_value = shown!(format_size(defaults().limits.max_frame)), value_parser = size, value_name = "SIZE")]
    max_frame_size: usize,

    /// Bytes the WebSocket reads at a time (memory per idle robot grows with it, byte for byte).
    #[arg(long, env = "SOCKET_SERVER_READ_BUFFER", default_value = shown!(format_size(defaults().limits.read_buffer)), value_parser = size, value_name = "SIZE")]
    read_buffer: usize,

    /// Unsent bytes one robot connection may buffer before it counts as too slow.
    #[arg(long, env = "SOCKET_SERVER_WRITE_BUFFER", default_value = shown!(format_size(defaults().limits.write_buffer)), value_parser = size, value_name = "SIZE")]
    write_buffer: usize,

    /// How long one write to a robot may take before the robot counts as too slow.
    #[arg(long, env = "SOCKET_SERVER_WRITE_TIMEOUT", default_value = shown!(format_duration(defaults().limits.write_timeout)), value_parser = positive_duration, value_name = "DURATION")]
    write_timeout: Duration,

    /// Frames queued for one robot before further sendings to it wait.
    #[arg(long, env = "SOCKET_SERVER_OUTBOUND_QUEUE", default_value_t = u32::try_from(defaults().limits.outbound_queue).unwrap_or(u32::MAX), value_parser = clap::value_parser!(u32).range(1..=100_000), value_name = "N")]
    outbound_queue: u32,

    /// Largest REST request body; larger is refused with 413.
    #[arg(long, env = "SOCKET_SERVER_MAX_BODY", default_value = shown!(format_size(defaults().limits.max_body)), value_parser = size, value_name = "SIZE")]
    max_body: usize,

    /// Largest page a listing returns.
    #[arg(long, env = "SOCKET_SERVER_MAX_PAGE", default_value_t = u32::try_from(defaults().limits.max_page).unwrap_or(u32::MAX), value_parser = clap::value_parser!(u32).range(1..=10_000), value_name = "N")]
    max_page: u32,

    /// Bad frames a robot may send within 10 s before it is disconnected with 1008.
    #[arg(
        long,
        env = "SOCKET_SERVER_BAD_FRAME_LIMIT",
        default_value_t = defaults().limits.bad_frames,
        value_name = "N"
    )]
    bad_frame_limit: u32,

    /// Frames a robot may send per second on average; beyond its burst the server stops reading
    /// from it until it may send again (TCP slows it down), and a robot held at its rate for 5 s
    /// is disconnected with 1008.
    #[arg(long, env = "SOCKET_SERVER_ROBOT_RATE", default_value_t = defaults().limits.robot_rate, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    robot_rate: u32,

    /// Frames a robot may send at once before the rate applies.
    #[arg(long, env = "SOCKET_SERVER_ROBOT_BURST", default_value_t = defaults().limits.robot_burst, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    robot_burst: u32,

    /// Open connections one source address may hold (0: unlimited). Robots behind a gateway
    /// all come from its address: raise it there.
    #[arg(
        long,
        env = "SOCKET_SERVER_MAX_CONNECTIONS_PER_IP",
        default_value_t = defaults().limits.connections_per_ip,
        value_name = "N"
    )]
    max_connections_per_ip: usize,

    /// Bearer token required on /api and the old routes (repeat, or comma-separate, to accept
    /// several while rotating). Default: the API is open.
    #[arg(
        long,
        env = "SOCKET_SERVER_API_TOKEN",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    api_token: Vec<String>,

    /// Token robots must present on the WebSocket upgrade (Authorization: Bearer, or ?token=).
    /// Default: robots need none.
    #[arg(
        long,
        env = "SOCKET_SERVER_ROBOT_TOKEN",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    robot_token: Vec<String>,

    /// Which robots need a credential of their own (POST /api/robots/{address}/credentials):
    /// open (an address with credentials takes only them; the others register as before, with
    /// --robot-token when set) or enrolled (every robot; the shared --robot-token registers no
    /// one; needs --api-token).
    #[arg(long, env = "SOCKET_SERVER_ROBOT_AUTH", default_value = defaults().access.robot_auth.as_str(), value_parser = parse_robot_auth, value_name = "MODE")]
    robot_auth: RobotAuth,

    /// Browser origins allowed to call the API or open a WebSocket (comma-separated, e.g.
    /// https://studio.example.com). Default: any; requests without an Origin are not browsers.
    #[arg(
        long,
        env = "SOCKET_SERVER_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    allowed_origins: Vec<String>,

    /// Largest HTTP request head (request line and headers).
    #[arg(long, env = "SOCKET_SERVER_MAX_HEADER_SIZE", default_value = shown!(format_size(defaults().limits.max_header_bytes)), value_parser = size, value_name = "SIZE")]
    max_header_size: usize,

    /// Check that a server answers GET /healthz on --listen (127.0.0.1 when it listens on all
    /// addresses), exit 0 if it does, 1 if not. For container health checks.
    #[arg(long)]
    pub(crate) healthcheck: bool,

    /// How long a client may take to send its request head.
    #[arg(long, env = "SOCKET_SERVER_HEADER_TIMEOUT", default_value = shown!(format_duration(defaults().limits.header_timeout)), value_parser = positive_duration, value_name = "DURATION")]
    header_timeout: Duration,

    /// How long a client may take to send a request body once its head arrived; a body that
    /// does not arrive in time gets 408 and the connection is closed.
    #[arg(long, env = "SOCKET_SERVER_BODY_TIMEOUT", default_value = shown!(format_duration(defaults().limits.body_timeout)), value_parser = positive_duration, value_name = "DURATION")]
    body_timeout: Duration,

    /// Request body bytes held across all connections at once (charged at the declared length
    /// when the head arrives, chunked bodies as they arrive); beyond it, 503 with Retry-After.
    #[arg(long, env = "SOCKET_SERVER_MAX_INFLIGHT_BODY", default_value = shown!(format_size(defaults().limits.max_inflight_body)), value_parser = size, value_name = "SIZE")]
    max_inflight_body: usize,

    /// Open connections in all, robots and HTTP; beyond it a new connection is closed at once.
    /// Default: the open-file limit (ulimit -n) minus 256 for the database, logs and files.
    #[arg(long, env = "SOCKET_SERVER_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    max_connections: Option<u64>,

    /// Messages kept per robot (GET /api/robots/{address}/messages); a new one beyond it drops
    /// the robot's oldest.
    #[arg(long, env = "SOCKET_SERVER_MAX_MESSAGES_PER_ROBOT", default_value_t = defaults().limits.max_messages_per_robot, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    max_messages_per_robot: u32,

    /// How long a robot connection may take to send valid metadata after its upgrade; then it
    /// is closed with 1008.
    #[arg(long, env = "SOCKET_SERVER_METADATA_TIMEOUT", default_value = shown!(format_duration(defaults().limits.metadata_timeout)), value_parser = positive_duration, value_name = "DURATION")]
    metadata_timeout: Duration,
}

/// The zone `TZ` names, read as the C library reads it in the forms containers set: `UTC0`,
/// `GMT0` and empty are UTC; `:Area/City` is that zone; a path (`:/etc/localtime`) is the zone
/// its link names, else UTC. Anything else that is no IANA name (a POSIX rule such as
/// `CET-1CEST`) is UTC, with the warning returned: only an explicit --timezone stops the start.
pub(crate) fn zone_of_tz(value: &str) -> (Tz, Option<String>) {
    let text = value.trim();
    let name = text.strip_prefix(':').unwrap_or(text).trim();
    if name.is_empty() || name.eq_ignore_ascii_case("UTC0") || name.eq_ignore_ascii_case("GMT0") {
        return (Tz::UTC, None);
    }
    if name.starts_with('/') {
        return (
            zone_of_file(std::path::Path::new(name)).unwrap_or(Tz::UTC),
            None,
        );
    }
    match parse_timezone(name) {
        Ok(zone) => (zone, None),
        Err(_) => (
            Tz::UTC,
            Some(format!(
                "TZ={:?} is not an IANA time zone: schedules that name no zone use UTC (set --timezone, e.g. Europe/Berlin)",
                rpa_server::logging::escape(text, 100)
            )),
        ),
    }
}

/// The zone a zoneinfo file (or a link to one) stands for, from its path.
fn zone_of_file(path: &std::path::Path) -> Option<Tz> {
    let target = std::fs::canonicalize(path).ok()?;
    let text = target.to_str()?;
    let (_, name) = text.split_once("zoneinfo/")?;
    name.parse().ok()
}

/// The machine's zone: /etc/localtime's link target, or /etc/timezone, else UTC.
fn machine_zone() -> Tz {
    zone_of_file(std::path::Path::new("/etc/localtime"))
        .or_else(|| {
            std::fs::read_to_string("/etc/timezone")
                .ok()
                .and_then(|name| name.trim().parse().ok())
        })
        .unwrap_or(Tz::UTC)
}

/// `PORT` holds no port number.
#[derive(Debug)]
pub(crate) struct BadPort(String);

impl std::fmt::Display for BadPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PORT: {:?} is not a port number", self.0)
    }
}

impl std::error::Error for BadPort {}

/// Tokens as written (a comma-separated environment variable may hold spaces around them).
fn trimmed(tokens: Vec<String>) -> Vec<String> {
    tokens.into_iter().map(|t| t.trim().to_owned()).collect()
}

/// The settings as read, with what the start must say about them.
pub(crate) struct Read {
    pub(crate) cli: Cli,
    /// `--listen` (or SOCKET_SERVER_LISTEN) was given: PORT does not apply.
    listen_given: bool,
}

impl Read {
    /// The flags and the environment of this process.
    pub(crate) fn from_env() -> Result<Read, clap::Error> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let matches = Cli::command().try_get_matches()?;
        let listen_given = matches
            .value_source("listen")
            .is_some_and(|source| source != clap::parser::ValueSource::DefaultValue);
        Ok(Read {
            cli: Cli::from_arg_matches(&matches)?,
            listen_given,
        })
    }

    /// The settings the flags name, not yet validated ([`Config::validate`]), and the warnings
    /// to log once the log is set up.
    pub(crate) fn into_config(self) -> Result<(Config, Vec<String>), BadPort> {
        let Read { cli, listen_given } = self;
        let port = if listen_given {
            None
        } else {
            std::env::var("PORT").ok()
        };
        let tz = std::env::var("TZ").ok();
        cli.into_config(port, tz.as_deref())
    }
}

impl Cli {
    /// The settings the flags name, given `PORT` (when --listen was not given) and `TZ`.
    fn into_config(
        self,
        port: Option<String>,
        tz: Option<&str>,
    ) -> Result<(Config, Vec<String>), BadPort> {
        let mut warnings = Vec::new();
        let listen = match port {
            Some(port) => {
                let number: u16 = port.trim().parse().map_err(|_| BadPort(port))?;
                SocketAddr::from((defaults().listen.ip(), number))
            }
            None => self.listen,
        };
        let timezone = match (self.timezone, tz) {
            (Some(zone), _) => zone,
            (None, Some(tz)) => {
                let (zone, warning) = zone_of_tz(tz);
                warnings.extend(warning);
                zone
            }
            (None, None) => machine_zone(),
        };
        let access = Access {
            api_tokens: trimmed(self.api_token),
            robot_tokens: trimmed(self.robot_token),
            allowed_origins: self
                .allowed_origins
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            robot_auth: self.robot_auth,
        };
        let config = Config {
            listen,
            database: self.database,
            packages_dir: self.packages_dir,
            log_dir: self.log_dir,
            log_level: self.log_level,
            log_to_stderr: self.log_stderr,
            ping_interval: self.ping_interval,
            timezone,
            misfire_grace: self.misfire_grace,
            max_delivery_attempts: self.max_delivery_attempts,
            ack_timeout: self.ack_timeout,
            pool_busy_timeout: self.pool_busy_timeout,
            job_report_timeout: self.job_report_timeout,
            log_retention_days: self.log_retention_days,
            job_retention_days: self.job_retention_days,
            retention_interval: self.retention_interval,
            min_schedule_interval: self.min_schedule_interval,
            max_database_size: self.max_database_size.map(|n| n as u64),
            sync_package_files: self.sync_package_files,
            instance_lease: self.instance_lease,
            event_retention: self.event_retention,
            alert_robot_offline_after: self.alert_robot_offline_after,
            alert_job_overdue_after: self.alert_job_overdue_after,
            webhook_retry_for: self.webhook_retry_for,
            webhook_deny: self.webhook_deny,
            webhook_ca_file: self.webhook_ca_file,
            limits: Limits {
                max_message: self.max_message_size,
                max_frame: self.max_frame_size,
                outbound_queue: self.outbound_queue as usize,
                read_buffer: self.read_buffer,
                write_buffer: self.write_buffer,
                write_timeout: self.write_timeout,
                max_body: self.max_body,
                max_page: self.max_page as usize,
                bad_frames: self.bad_frame_limit,
                max_header_bytes: self.max_header_size,
                header_timeout: self.header_timeout,
                robot_rate: self.robot_rate,
                robot_burst: self.robot_burst,
                connections_per_ip: self.max_connections_per_ip,
                body_timeout: self.body_timeout,
                max_inflight_body: self.max_inflight_body,
                max_connections: self
                    .max_connections
                    .map_or(defaults().limits.max_connections, |n| {
                        usize::try_from(n).unwrap_or(usize::MAX)
                    }),
                max_messages_per_robot: self.max_messages_per_robot,
                metadata_timeout: self.metadata_timeout,
                ..Limits::default()
            },
            access,
        };
        Ok((config, warnings))
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, FromArgMatches as _};

    use super::*;

    /// The flags as they read with no flag given and no environment.
    fn unset() -> Cli {
        let command = Cli::command().mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command.try_get_matches_from(["socket-server"]).unwrap();
        Cli::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn unset_flags_are_the_config_defaults() {
        let (mut config, warnings) = unset().into_config(None, Some("UTC")).unwrap();
        assert!(warnings.is_empty());
        let defaults = Config::default();
        assert_eq!(config.timezone, Tz::UTC);
        config.timezone = defaults.timezone;
        assert_eq!(config, defaults);
    }

    #[test]
    fn port_alone_listens_on_every_address_and_listen_takes_a_port_too() {
        let (config, _) = unset().into_config(Some("4100".into()), None).unwrap();
        assert_eq!(config.listen, "0.0.0.0:4100".parse().unwrap());
        assert!(unset().into_config(Some("x".into()), None).is_err());
        let command = Cli::command().mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command
            .try_get_matches_from(["socket-server", "--listen", "4200"])
            .unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        assert_eq!(cli.listen, "0.0.0.0:4200".parse().unwrap());
    }

    #[test]
    fn tz_in_the_forms_containers_set() {
        for utc in ["UTC0", "GMT0", "", ":UTC", "UTC", " gmt0 "] {
            assert_eq!(zone_of_tz(utc), (Tz::UTC, None), "{utc:?}");
        }
        assert_eq!(zone_of_tz(":Europe/Berlin"), (Tz::Europe__Berlin, None));
        assert_eq!(zone_of_tz("Europe/Berlin"), (Tz::Europe__Berlin, None));
        assert_eq!(zone_of_tz(":/nonexistent/zone").0, Tz::UTC);
        assert_eq!(zone_of_tz(":/nonexistent/zone").1, None);
        let (zone, warning) = zone_of_tz("CET-1CEST");
        assert_eq!(zone, Tz::UTC);
        assert!(warning.unwrap().contains("CET-1CEST"));
        // An explicit --timezone is held to IANA names.
        let command = Cli::command().mut_args(|arg| arg.env(None::<&'static str>));
        assert!(
            command
                .try_get_matches_from(["socket-server", "--timezone", "UTC0"])
                .is_err()
        );
    }

    #[test]
    fn help_shows_the_defaults_as_they_are_written() {
        let help = Cli::command().render_help().to_string();
        for shown in [
            "[default: sqlite://data/socket-server.db]",
            "[default: 10s]",
            "[default: 1h]",
            "[default: 64KiB]",
            "[default: 1KiB]",
            "[default: 1MiB]",
            "[default: packages]",
            "[default: 0.0.0.0:4000]",
            "[default: 30s]",
            "[default: 64MiB]",
            "[default: 1000]",
        ] {
            assert!(help.contains(shown), "{shown} missing from --help");
        }
    }
}
