//! Command-line arguments.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rpa_protocol::Dialect;

#[derive(Debug, Parser)]
#[command(
    name = "rpa-loadgen",
    version,
    about = "Benchmarks of the RPA orchestrator server (quality.md P1-P8), and a smoke run of all.",
    long_about = "Benchmarks of the RPA orchestrator server (quality.md P1-P8), and a smoke run \
                  of all. Each scenario either starts the server itself (--server-bin, in a fresh \
                  temporary folder) or attaches to a running one (--url, --server-pid). Results: a \
                  table on stdout, and a JSON document with --json FILE. The exit status is 0 when \
                  the scenario ran and saw no correctness failure (lost or early jobs, unexpected \
                  drops), 1 when it saw one, 2 when it could not run. Timings are never judged."
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// P1: N robots registered and held for a while, pinged by the server.
    #[command(name = "p1-idle")]
    P1Idle(P1Args),
    /// P2: server RSS with 0, N/4, N/2 and N registered robots; KiB per robot.
    #[command(name = "p2-memory")]
    P2Memory(P2Args),
    /// P3: durable triggers per second from C keep-alive clients, jobs due in a year.
    #[command(name = "p3-triggers")]
    P3Triggers(P3Args),
    /// P4: end to end: trigger stored, delivered, robot report stored.
    #[command(name = "p4-e2e")]
    P4E2e(P4Args),
    /// P5: one job each for N robots, all due at the same moment.
    #[command(name = "p5-fanout")]
    P5Fanout(P5Args),
    /// P6: firing lateness at a steady rate of due jobs.
    #[command(name = "p6-lateness")]
    P6Lateness(P6Args),
    /// P7: kill -9 with many pending jobs, restart: time to listen, to the first due job, RSS.
    #[command(name = "p7-restart")]
    P7Restart(P7Args),
    /// P8: N robots drop their connections at once and reconnect at once.
    #[command(name = "p8-reconnect")]
    P8Reconnect(P8Args),
    /// P9: pool jobs fanned out through one pool of robots that report (docs/POOLS.md).
    #[command(name = "p9-pool")]
    P9Pool(P9Args),
    /// Every scenario with tiny sizes, each against its own freshly started server (for CI).
    Smoke(SmokeArgs),
    /// Internal: a process holding robots, driven over stdin/stdout.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Where the server is, how robots behave, where results go.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Start this server binary (e.g. target/release/socket-server) in a fresh temporary
    /// folder; it listens on 127.0.0.1 on a free port.
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// An argument for the started server (repeat for several), e.g.
    /// --server-arg=--ping-interval=1s.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Run the started server in this folder instead of a temporary one (kept afterwards).
    #[arg(long, value_name = "DIR")]
    pub server_dir: Option<PathBuf>,
    /// Keep the temporary folder of the started server (database, packages, logs).
    #[arg(long)]
    pub keep_server_dir: bool,
    /// Attach to a running server instead, e.g. http://127.0.0.1:4000.
    #[arg(long, value_name = "URL", conflicts_with = "server_bin")]
    pub url: Option<String>,
    /// Another instance of the attached server, sharing its database (PostgreSQL; repeat for
    /// several): robot worker processes and trigger clients are spread over all instances,
    /// round-robin. Figures from /metrics are the first instance's, but for the robots
    /// connected (summed) and the job counts (from the shared database).
    #[arg(long, value_name = "URL", requires = "url")]
    pub also_url: Vec<String>,
    /// The PID of the attached server, for its memory and CPU figures.
    #[arg(long, value_name = "PID", requires = "url")]
    pub server_pid: Option<u32>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Robots per worker process; each process connects from its own source address
    /// (127.0.0.2, 127.0.0.3, ...). Stay under the 20,000 open files per process.
    #[arg(long, default_value = "9000", value_parser = parse_count)]
    pub robots_per_process: usize,
    /// Robot dialect: `_event` (the C# robot) or `event` (README-era robots).
    #[arg(long, default_value = "_event", value_parser = parse_dialect)]
    pub dialect: Dialect,
    /// Extended robots (protocol 2): they wait for `registered` and acknowledge each package.
    /// Default: field robots.
    #[arg(long)]
    pub extended: bool,
    /// Connections opened at a time per worker process while robots are set up.
    #[arg(long, default_value = "256", value_parser = parse_count)]
    pub connect_concurrency: usize,
    /// Two hex digits that start every robot address (robot i is PREFIX + i in 10 hex digits).
    #[arg(long, default_value = "AC", value_parser = parse_prefix)]
    pub robot_prefix: String,
    /// The WebSocket path robots connect to.
    #[arg(long, default_value = "/")]
    pub ws_path: String,
}

#[derive(Debug, Clone, Args)]
pub struct P1Args {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "19000", value_parser = parse_count)]
    pub robots: usize,
    /// How long the robots are held once all are registered.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How often the hold is sampled (server gauge, RSS, robots connected).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub sample_every: Duration,
    /// Longest wait for all robots to register.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub register_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct P2Args {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "19000", value_parser = parse_count)]
    pub robots: usize,
    /// Wait after each step's registrations before reading the RSS.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub register_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct P3Args {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent keep-alive HTTP clients.
    #[arg(long, default_value = "64", value_parser = parse_count)]
    pub clients: usize,
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Robots registered first (with the rpa-robot library); triggers go to them in turn.
    #[arg(long, default_value = "8", value_parser = parse_count)]
    pub robots: usize,
    /// Also subscribe a fast receiver (in this process, on loopback) to every event with a
    /// webhook, and report its deliveries: what webhooks cost the triggers.
    #[arg(long)]
    pub webhook: bool,
}

#[derive(Debug, Clone, Args)]
pub struct P4Args {
    #[command(flatten)]
    pub common: Common,
    /// Robots, each reporting success on every package.
    #[arg(long, default_value = "2000", value_parser = parse_count)]
    pub robots: usize,
    #[arg(long, default_value = "64", value_parser = parse_count)]
    pub clients: usize,
    /// How long triggers are sent (at full speed, each due now).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Longest wait after the triggers for every accepted job to be Succeeded.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Triggers per second at most (0: as fast as the server answers). Keep each robot under
    /// the server's --robot-rate (20 frames/s): a robot sends 1 frame per job, 2 when extended.
    #[arg(long, default_value = "0", value_parser = parse_count)]
    pub max_rate: usize,
}

#[derive(Debug, Clone, Args)]
pub struct P5Args {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "19000", value_parser = parse_count)]
    pub robots: usize,
    #[arg(long, default_value = "64", value_parser = parse_count)]
    pub clients: usize,
    /// The common due moment T is this long after the robots are registered (whole second);
    /// every job must be created before T.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lead: Duration,
    /// Longest wait after T for every delivery.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often /metrics is read after T to see the jobs recorded as sent.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub poll_every: Duration,
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub register_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct P6Args {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "1000", value_parser = parse_count)]
    pub robots: usize,
    /// Due jobs per second.
    #[arg(long, default_value = "1000", value_parser = parse_count)]
    pub rate: usize,
    /// How long jobs fall due.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Each job is created this long before its due moment.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lead: Duration,
    #[arg(long, default_value = "64", value_parser = parse_count)]
    pub clients: usize,
    /// Longest wait after the last due moment for the last delivery.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct P7Args {
    #[command(flatten)]
    pub common: Common,
    /// Pending jobs put in the database (through the API) before the kill.
    #[arg(long, default_value = "1000000", value_parser = parse_count)]
    pub pending: usize,
    #[arg(long, default_value = "64", value_parser = parse_count)]
    pub clients: usize,
    /// Robots (never connected) the pending jobs are spread over.
    #[arg(long, default_value = "100", value_parser = parse_count)]
    pub pending_robots: usize,
    /// The connected robot's job is due this long after it is accepted; the server is killed
    /// right after accepting it.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub due_after: Duration,
    /// How long the server stays down (from the kill to the new spawn).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub down: Duration,
    /// Longest wait, from the new spawn, for the due job to reach the robot.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Longest time the database filling may take; the run stops with an error beyond it.
    #[arg(long, default_value = "1800s", value_parser = parse_duration)]
    pub fill_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct P9Args {
    #[command(flatten)]
    pub common: Common,
    /// Robots, all in one pool, each reporting success on every package. The default is a
    /// smoke size; the run is --robots 2000 --jobs 20000.
    #[arg(long, default_value = "20", value_parser = parse_count)]
    pub robots: usize,
    /// Pool jobs, all due at once.
    #[arg(long, default_value = "200", value_parser = parse_count)]
    pub jobs: usize,
    #[arg(long, default_value = "16", value_parser = parse_count)]
    pub clients: usize,
    /// Every job is due at T, a whole second at least this long after the robots joined the
    /// pool; every job must be created before T.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub lead: Duration,
    /// Longest wait, from T, for every job to be Succeeded.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub register_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct P8Args {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "10000", value_parser = parse_count)]
    pub robots: usize,
    /// Reconnect without waiting for the server to see the drops first.
    #[arg(long)]
    pub no_wait_offline: bool,
    /// Attempts after a failed reconnection (each failure is counted).
    #[arg(long, default_value = "3")]
    pub retries: u32,
    /// Longest wait for all robots to be registered again.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub register_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct SmokeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Robots in the robot scenarios.
    #[arg(long, default_value = "20", value_parser = parse_count)]
    pub robots: usize,
    /// Pending jobs of p7-restart.
    #[arg(long, default_value = "2000", value_parser = parse_count)]
    pub pending: usize,
    /// Duration of the timed parts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub server: SocketAddr,
    #[arg(long, default_value = "/")]
    pub path: String,
    #[arg(long)]
    pub source: IpAddr,
    #[arg(long)]
    pub first: usize,
    #[arg(long)]
    pub count: usize,
    #[arg(long, default_value = "AC", value_parser = parse_prefix)]
    pub prefix: String,
    #[arg(long, default_value = "_event", value_parser = parse_dialect)]
    pub dialect: Dialect,
    #[arg(long)]
    pub extended: bool,
    #[arg(long)]
    pub report: bool,
}

/// `600s`, `2m`, `500ms`, `1.5s`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 600s, 2m or 500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => number,
        "ms" => number / 1000.0,
        "us" => number / 1e6,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}` (ms, s, m, h)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `19000`, `19_000`, `19,000`, `10k`, `1M`.
pub fn parse_count(text: &str) -> Result<usize, String> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    let (digits, factor) = match cleaned.strip_suffix(['k', 'K']) {
        Some(digits) => (digits, 1_000),
        None => match cleaned.strip_suffix('M') {
            Some(digits) => (digits, 1_000_000),
            None => (cleaned.as_str(), 1),
        },
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is not a count such as 19000, 19_000 or 10k"))
}

pub fn parse_dialect(text: &str) -> Result<Dialect, String> {
    match text.trim() {
        "_event" | "underscore" => Ok(Dialect::Underscore),
        "event" | "plain" => Ok(Dialect::Plain),
        other => Err(format!("unknown dialect `{other}` (_event or event)")),
    }
}

pub fn parse_prefix(text: &str) -> Result<String, String> {
    if text.len() == 2 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_uppercase())
    } else {
        Err(format!("`{text}` is not two hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600s"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("19000"), Ok(19_000));
        assert_eq!(parse_count("19_000"), Ok(19_000));
        assert_eq!(parse_count("19,000"), Ok(19_000));
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("1M"), Ok(1_000_000));
        assert!(parse_count("-1").is_err());
        assert!(parse_count("many").is_err());
    }

    #[test]
    fn dialects_and_prefixes() {
        assert_eq!(parse_dialect("_event"), Ok(Dialect::Underscore));
        assert_eq!(parse_dialect("event"), Ok(Dialect::Plain));
        assert!(parse_dialect("socket.io").is_err());
        assert_eq!(parse_prefix("ac"), Ok("AC".to_owned()));
        assert!(parse_prefix("ACX").is_err());
        assert!(parse_prefix("ZZ").is_err());
    }

    #[test]
    fn scenario_defaults() {
        let cli = Cli::try_parse_from([
            "rpa-loadgen",
            "p1-idle",
            "--server-bin",
            "target/release/socket-server",
        ])
        .unwrap();
        let Scenario::P1Idle(args) = cli.scenario else {
            panic!("p1-idle")
        };
        assert_eq!(args.robots, 19_000);
        assert_eq!(args.duration, Duration::from_secs(600));
        assert_eq!(args.common.robots_per_process, 9_000);
        assert_eq!(args.common.dialect, Dialect::Underscore);
        assert!(!args.common.extended);

        let cli =
            Cli::try_parse_from(["rpa-loadgen", "p7-restart", "--url", "http://x:1"]).unwrap();
        let Scenario::P7Restart(args) = cli.scenario else {
            panic!("p7-restart")
        };
        assert_eq!(args.pending, 1_000_000);
    }

    #[test]
    fn server_arguments_may_start_with_dashes() {
        let cli = Cli::try_parse_from([
            "rpa-loadgen",
            "p3-triggers",
            "--server-bin",
            "s",
            "--server-arg",
            "--ping-interval",
            "--server-arg",
            "1s",
            "--server-arg=--log-level=warn",
            "--clients",
            "8",
            "--duration",
            "5s",
            "--json",
            "out.json",
        ])
        .unwrap();
        let Scenario::P3Triggers(args) = cli.scenario else {
            panic!("p3-triggers")
        };
        assert_eq!(
            args.common.server_args,
            ["--ping-interval", "1s", "--log-level=warn"]
        );
        assert_eq!(args.clients, 8);
        assert_eq!(args.duration, Duration::from_secs(5));
        assert_eq!(args.common.json, Some(PathBuf::from("out.json")));
    }

    #[test]
    fn url_and_server_bin_exclude_each_other() {
        assert!(
            Cli::try_parse_from([
                "rpa-loadgen",
                "p1-idle",
                "--url",
                "http://127.0.0.1:4000",
                "--server-bin",
                "s"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["rpa-loadgen", "p1-idle", "--server-pid", "5"]).is_err());
        assert!(Cli::try_parse_from(["rpa-loadgen", "p9"]).is_err());
    }

    #[test]
    fn the_worker_is_hidden_but_parses() {
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("worker"));
        let cli = Cli::try_parse_from([
            "rpa-loadgen",
            "worker",
            "--server",
            "127.0.0.1:4000",
            "--source",
            "127.0.0.2",
            "--first",
            "0",
            "--count",
            "10",
            "--extended",
        ])
        .unwrap();
        assert!(matches!(
            cli.scenario,
            Scenario::Worker(WorkerArgs { extended: true, .. })
        ));
    }
}
