//! The server under test: the real release binary (started through `rpa-testkit`) in a folder
//! of its own (its `data/`, `packages/` and `serverLogs/` live there), killed, stopped and
//! started again on the same folder and port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Result;
use rpa_testkit::error::last_lines;
use rpa_testkit::procfs::status_kib;
use rpa_testkit::{ServerCommand, ServerProcess, StartFailure};

pub use rpa_testkit::server::send_signal;

/// How long a server may take to print `listening on`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start the server: in `dir`, on UTC, with nothing of libfaketime unless a fault adds
/// it, its stderr kept in `server-stderr.log` there.
pub fn spec(bin: &Path, dir: &Path) -> ServerCommand {
    ServerCommand::new(bin, dir)
        .env("TZ", "UTC")
        .env_remove("LD_PRELOAD")
        .env_remove_prefix("FAKETIME")
        .stderr_to_file(dir.join("server-stderr.log"))
        .start_timeout(START_TIMEOUT)
}

/// What faults add to a start.
pub trait SpecExt {
    /// Lifts the per-robot frame rate limit: the fault's robots report on every package, and
    /// the limit is not what the fault tests.
    fn unlimited_robot_rate(self) -> Self;
}

impl SpecExt for ServerCommand {
    fn unlimited_robot_rate(self) -> ServerCommand {
        self.flag("--robot-rate", 100_000)
            .flag("--robot-burst", 100_000)
    }
}

/// A started server process, killed when dropped.
pub struct Server {
    process: ServerProcess,
}

impl Server {
    /// Starts the server on a free port.
    pub async fn start(spec: ServerCommand) -> Result<Server> {
        let process = spec.start_async().await.map_err(start_error)?;
        Ok(Server { process })
    }

    /// Starts it again on the same folder and port (after a kill or a stop); how long it took.
    pub async fn restart(&mut self) -> Result<Duration> {
        let started = self.process.restart_async().await.map_err(start_error)?;
        Ok(started.listening_after)
    }

    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn ws_url(&self) -> String {
        self.process.ws_url("/")
    }

    /// The SQLite database in the server's folder.
    pub fn database(&self) -> PathBuf {
        self.process.dir().join("data").join("socket-server.db")
    }

    /// Sends a signal by name (`KILL`, `TERM`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) -> Result<()> {
        Ok(self.process.signal(name)?)
    }

    /// `kill -9` and wait until the process is gone.
    pub fn kill9(&mut self) -> Result<()> {
        Ok(self.process.kill9()?)
    }

    /// Waits at most `limit` for the process to exit; `None` when it did not.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        Ok(self.process.wait_async(limit).await?)
    }

    /// SIGTERM, then SIGKILL after 15 s: a clean stop between phases.
    pub async fn stop(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.process.terminate(Duration::from_secs(15)).await?)
    }

    /// Resident memory (`VmRSS`) in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        status_kib(self.pid()?, "VmRSS")
    }

    /// Resident memory by kind, KiB: heap and stacks, mapped files, shared memory (SQLite's
    /// WAL index).
    pub fn rss_breakdown(&self) -> serde_json::Value {
        let pid = self.pid().unwrap_or(0);
        serde_json::json!({
            "rss": status_kib(pid, "VmRSS"),
            "anon": status_kib(pid, "RssAnon"),
            "file": status_kib(pid, "RssFile"),
            "shmem": status_kib(pid, "RssShmem"),
        })
    }

    /// Log lines holding `needle`, at most `limit` of them (all days: a faked clock may name
    /// any day).
    pub fn log_lines(&self, needle: &str, limit: usize) -> Vec<String> {
        self.process
            .logs()
            .lines()
            .filter(|line| line.contains(needle))
            .take(limit)
            .map(str::to_owned)
            .collect()
    }
}

/// A start that failed, told the way the fault reports have always told it: why, and the last
/// lines of the server's stderr on one line.
fn start_error(error: rpa_testkit::Error) -> anyhow::Error {
    match error {
        rpa_testkit::Error::NotListening { why, stderr, .. } => {
            let why = match why {
                StartFailure::Timeout(limit) => format!("no `listening on` within {limit:?}"),
                other => other.to_string(),
            };
            let tail = last_lines(&stderr, 5)
                .lines()
                .collect::<Vec<_>>()
                .join(" | ");
            anyhow::anyhow!("the server did not start ({why}): {tail}")
        }
        rpa_testkit::Error::Spawn { bin, source } => {
            anyhow::anyhow!("cannot start {}: {source}", bin.display())
        }
        other => other.into(),
    }
}

/// A working folder for one fault's server, removed at the end unless kept.
pub struct WorkDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl WorkDir {
    pub fn new(parent: Option<&Path>, label: &str, keep: bool) -> Result<WorkDir> {
        let prefix = format!("rpa-faults-{label}-");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        let dir = match parent {
            Some(parent) => {
                std::fs::create_dir_all(parent)?;
                builder.tempdir_in(parent)?
            }
            None => builder.tempdir()?,
        };
        let path = dir.path().to_owned();
        let dir = if keep {
            let _ = dir.keep();
            None
        } else {
            Some(dir)
        };
        Ok(WorkDir { dir, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kept(&self) -> bool {
        self.dir.is_none()
    }
}
