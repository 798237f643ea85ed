//! The server under test: started by the tool (so it knows the PID, can kill it with SIGKILL
//! and start it again on the same data), or attached to by URL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::bail;
use crate::error::{Error, Result};
use crate::machine::{self, Memory};

/// How long a started server may take to print `listening on`.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub bin: PathBuf,
    /// Extra arguments (`--server-arg`), after `--listen 127.0.0.1:0 --log-stderr false`
    /// unless they set those themselves.
    pub args: Vec<String>,
    /// Where the server runs (its data/, packages/ and serverLogs/). Default: a fresh folder
    /// under the temporary directory, removed at the end.
    pub dir: Option<PathBuf>,
    pub keep_dir: bool,
    /// Names the temporary folder.
    pub label: String,
}

/// A started server process.
struct Managed {
    spec: ServerSpec,
    dir: PathBuf,
    remove_dir: bool,
    child: Option<Child>,
}

/// The moment a server was spawned and how long it took to print `listening on`.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub spawned_at: Instant,
    pub listening_after: Duration,
}

/// The server under test.
pub struct Target {
    pub addr: SocketAddr,
    /// Further instances sharing its database (attached only).
    pub others: Vec<SocketAddr>,
    pid: Option<u32>,
    managed: Option<Managed>,
}

impl Target {
    /// Every instance: this one first.
    pub fn instances(&self) -> Vec<SocketAddr> {
        std::iter::once(self.addr)
            .chain(self.others.iter().copied())
            .collect()
    }

    /// Attaches to a running server; `pid` enables memory and CPU figures.
    pub fn attach(addr: SocketAddr, others: Vec<SocketAddr>, pid: Option<u32>) -> Target {
        Target {
            addr,
            others,
            pid,
            managed: None,
        }
    }

    /// Starts the server in a fresh (or the given) folder and waits for `listening on`.
    pub async fn spawn(spec: ServerSpec) -> Result<(Target, Started)> {
        let (dir, remove_dir) = match &spec.dir {
            Some(dir) => (dir.clone(), false),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let dir = std::env::temp_dir().join(format!(
                    "rpa-loadgen-{}-{}-{nanos}",
                    spec.label,
                    std::process::id()
                ));
                (dir, !spec.keep_dir)
            }
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::msg(format!("cannot create {}: {e}", dir.display())))?;
        let (child, addr, started) = start(&spec, &dir, None).await?;
        let pid = child.id();
        Ok((
            Target {
                addr,
                others: Vec::new(),
                pid,
                managed: Some(Managed {
                    spec,
                    dir,
                    remove_dir,
                    child: Some(child),
                }),
            },
            started,
        ))
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn is_managed(&self) -> bool {
        self.managed.is_some()
    }

    /// The folder the started server runs in.
    pub fn dir(&self) -> Option<&Path> {
        self.managed.as_ref().map(|m| m.dir.as_path())
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn memory(&self) -> Option<Memory> {
        machine::memory(self.pid?)
    }

    pub fn rss_kib(&self) -> Option<u64> {
        self.memory().map(|m| m.rss_kib)
    }

    pub fn cpu_seconds(&self) -> Option<f64> {
        machine::cpu_seconds(self.pid?)
    }

    pub fn open_fds(&self) -> Option<usize> {
        machine::open_fds(self.pid?)
    }

    /// Whether the started server has exited (always `false` when attached).
    pub fn has_exited(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.managed.as_mut()?.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill9(&mut self) -> Result<()> {
        let Some(managed) = self.managed.as_mut() else {
            bail!("kill -9 needs a server started by the tool (--server-bin)");
        };
        if let Some(mut child) = managed.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        self.pid = None;
        Ok(())
    }

    /// Starts the server again on the same folder and the same port.
    pub async fn restart(&mut self) -> Result<Started> {
        let listen = format!("127.0.0.1:{}", self.addr.port());
        let Some(managed) = self.managed.as_mut() else {
            bail!("a restart needs a server started by the tool (--server-bin)");
        };
        if managed.child.is_some() {
            bail!("the server is still running");
        }
        let (child, addr, started) = start(&managed.spec, &managed.dir, Some(&listen)).await?;
        self.pid = child.id();
        self.addr = addr;
        managed.child = Some(child);
        Ok(started)
    }

    /// Stops a started server (SIGTERM, then SIGKILL after 10 s) and removes its temporary
    /// folder. Does nothing to an attached server.
    pub async fn shutdown(mut self) -> Result<()> {
        let Some(mut managed) = self.managed.take() else {
            return Ok(());
        };
        if let Some(mut child) = managed.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                child.start_kill()?;
                child.wait().await?;
            }
        }
        if managed.remove_dir {
            let dir = managed.dir.clone();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
        Ok(())
    }
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// The arguments the server is started with.
pub fn server_args(extra: &[String], listen: Option<&str>) -> Vec<String> {
    let mut args = Vec::new();
    if !has_flag(extra, "--listen") {
        args.push("--listen".to_owned());
        args.push(listen.unwrap_or("127.0.0.1:0").to_owned());
    }
    if !has_flag(extra, "--log-stderr") {
        args.push("--log-stderr".to_owned());
        args.push("false".to_owned());
    }
    args.extend(extra.iter().cloned());
    args
}

async fn start(
    spec: &ServerSpec,
    dir: &Path,
    listen: Option<&str>,
) -> Result<(Child, SocketAddr, Started)> {
    let stderr_path = dir.join("server-stderr.log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_path)?;
    let mut command = Command::new(&spec.bin);
    command
        .current_dir(dir)
        .args(server_args(&spec.args, listen))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("SOCKET_SERVER_")
            || matches!(key.as_ref(), "PORT" | "DATABASE_URL" | "RUST_LOG")
        {
            command.env_remove(key.as_ref());
        }
    }
    let spawned_at = Instant::now();
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
                return Ok(Some((addr.to_owned(), Instant::now())));
            }
        }
        Ok::<_, Error>(None)
    })
    .await;
    let found = match waited {
        Ok(Ok(Some(found))) => found,
        other => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let tail = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            let why = match other {
                Err(_) => format!("no `listening on` line within {START_TIMEOUT:?}"),
                Ok(Err(e)) => e.to_string(),
                _ => "it exited before listening".to_owned(),
            };
            bail!(
                "the server ({}) did not start: {why}\n{tail}",
                spec.bin.display()
            );
        }
    };
    // Keep reading stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr: SocketAddr = found
        .0
        .parse()
        .map_err(|_| Error::msg(format!("unreadable listening address {:?}", found.0)))?;
    // A server listening on all addresses is reached on loopback.
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    Ok((
        child,
        addr,
        Started {
            spawned_at,
            listening_after: found.1 - spawned_at,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_overridden_arguments() {
        assert_eq!(
            server_args(&[], None),
            ["--listen", "127.0.0.1:0", "--log-stderr", "false"]
        );
        assert_eq!(
            server_args(
                &["--ping-interval".into(), "1s".into()],
                Some("127.0.0.1:4100")
            ),
            [
                "--listen",
                "127.0.0.1:4100",
                "--log-stderr",
                "false",
                "--ping-interval",
                "1s"
            ]
        );
        assert_eq!(
            server_args(&["--listen=127.0.0.1:5000".into()], None),
            ["--log-stderr", "false", "--listen=127.0.0.1:5000"]
        );
    }
}
