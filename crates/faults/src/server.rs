//! The server under test: the real release binary, started in a folder of its own (its
//! `data/`, `packages/` and `serverLogs/` live there), killed, stopped and started again on the
//! same folder and port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::bail;
use crate::error::{Error, Result};

/// How long a server may take to print `listening on`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub bin: PathBuf,
    /// Its working folder.
    pub dir: PathBuf,
    /// Flags after `--listen 127.0.0.1:PORT --log-stderr false`.
    pub args: Vec<String>,
    /// Extra environment (libfaketime's).
    pub env: Vec<(String, String)>,
}

impl ServerSpec {
    pub fn new(bin: &Path, dir: &Path) -> ServerSpec {
        ServerSpec {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn arg(mut self, flag: &str, value: impl ToString) -> ServerSpec {
        self.args.push(flag.to_owned());
        self.args.push(value.to_string());
        self
    }

    /// Lifts the per-robot frame rate limit: the fault's robots report on every package, and
    /// the limit is not what the fault tests.
    pub fn unlimited_robot_rate(self) -> ServerSpec {
        self.arg("--robot-rate", 100_000)
            .arg("--robot-burst", 100_000)
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> ServerSpec {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn database(&self) -> PathBuf {
        self.dir.join("data").join("socket-server.db")
    }
}

/// A started server process, killed when dropped.
pub struct Server {
    pub spec: ServerSpec,
    pub addr: SocketAddr,
    child: Option<Child>,
    /// How long each start took, from spawn to `listening on`.
    pub starts: Vec<Duration>,
}

impl Server {
    /// Starts the server on a free port.
    pub async fn start(spec: ServerSpec) -> Result<Server> {
        std::fs::create_dir_all(&spec.dir)?;
        let (child, addr, took) = spawn(&spec, "127.0.0.1:0").await?;
        Ok(Server {
            spec,
            addr,
            child: Some(child),
            starts: vec![took],
        })
    }

    /// Starts it again on the same folder and port (after a kill or a stop).
    pub async fn restart(&mut self) -> Result<Duration> {
        if self.child.is_some() {
            bail!("the server is still running");
        }
        let listen = format!("127.0.0.1:{}", self.addr.port());
        // The port may linger for a moment after a kill.
        let mut tries = 0;
        let (child, addr, took) = loop {
            match spawn(&self.spec, &listen).await {
                Ok(started) => break started,
                Err(error) if tries < 20 && error.to_string().contains("--listen") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => return Err(error),
            }
        };
        self.addr = addr;
        self.child = Some(child);
        self.starts.push(took);
        Ok(took)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Sends a signal by name (`KILL`, `TERM`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) -> Result<()> {
        let Some(pid) = self.pid() else {
            bail!("the server is not running");
        };
        send_signal(pid, name)
    }

    /// `kill -9` and wait until the process is gone.
    pub async fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Waits at most `limit` for the process to exit; `None` when it did not.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            bail!("the server is not running");
        };
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => {
                self.child = None;
                Ok(Some(status?))
            }
            Err(_) => Ok(None),
        }
    }

    /// SIGTERM, then SIGKILL after 15 s: a clean stop between phases.
    pub async fn stop(&mut self) -> Result<Option<ExitStatus>> {
        if self.child.is_none() {
            return Ok(None);
        }
        self.signal("TERM")?;
        match self.wait_exit(Duration::from_secs(15)).await? {
            Some(status) => Ok(Some(status)),
            None => {
                self.kill9().await?;
                Ok(None)
            }
        }
    }

    /// Resident memory (`VmRSS`) in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid()?)
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

    /// The server's log files, concatenated (all days: a faked clock may name any day).
    pub fn log_text(&self) -> String {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.spec.dir.join("serverLogs"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .collect::<Vec<_>>()
            .join("")
    }

    /// Log lines holding `needle`, at most `limit` of them.
    pub fn log_lines(&self, needle: &str, limit: usize) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|line| line.contains(needle))
            .take(limit)
            .map(str::to_owned)
            .collect()
    }
}

pub fn send_signal(pid: u32, name: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `RssAnon`, `RssFile`, `RssShmem`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

async fn spawn(spec: &ServerSpec, listen: &str) -> Result<(Child, SocketAddr, Duration)> {
    let stderr_path = spec.dir.join("server-stderr.log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_path)?;
    let mut command = Command::new(&spec.bin);
    command
        .current_dir(&spec.dir)
        .args(["--listen", listen, "--log-stderr", "false"])
        .args(&spec.args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("SOCKET_SERVER_")
            || key.starts_with("FAKETIME")
            || matches!(
                key.as_ref(),
                "PORT" | "DATABASE_URL" | "RUST_LOG" | "LD_PRELOAD"
            )
        {
            command.env_remove(key.as_ref());
        }
    }
    for (key, value) in &spec.env {
        command.env(key, value);
    }
    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| Error::msg(format!("cannot start {}: {e}", spec.bin.display())))?;
    let Some(stdout) = child.stdout.take() else {
        bail!("the server's stdout is not captured");
    };
    let mut lines = BufReader::new(stdout).lines();
    let waited = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                return Ok(Some(addr.to_owned()));
            }
        }
        Ok::<_, Error>(None)
    })
    .await;
    let took = spawned.elapsed();
    let addr = match waited {
        Ok(Ok(Some(addr))) => addr,
        other => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let why = match other {
                Err(_) => format!("no `listening on` within {START_TIMEOUT:?}"),
                Ok(Err(error)) => error.to_string(),
                _ => "it exited before listening".to_owned(),
            };
            bail!(
                "the server did not start ({why}): {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
    };
    // Keep reading stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| Error::msg(format!("unreadable listening address {addr:?}")))?;
    Ok((child, addr, took))
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
