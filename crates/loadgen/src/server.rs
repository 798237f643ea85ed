//! The server under test: started by the tool through `rpa-testkit` (so it knows the PID, can
//! kill it with SIGKILL and start it again on the same data), or attached to by URL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use rpa_testkit::{ServerCommand, ServerProcess};

use crate::machine::{self, Memory};

pub use rpa_testkit::Started;

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

/// A started server process, and whether its folder goes at the end.
struct Managed {
    process: ServerProcess,
    remove_dir: bool,
}

/// The server under test.
pub struct Target {
    pub addr: SocketAddr,
    /// Further instances sharing its database (attached only).
    pub others: Vec<SocketAddr>,
    /// The attached server's, when given.
    attached_pid: Option<u32>,
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
            attached_pid: pid,
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
            .map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
        let process = ServerCommand::new(&spec.bin, &dir)
            .args(spec.args)
            .stderr_to_file(dir.join("server-stderr.log"))
            .start_timeout(START_TIMEOUT)
            .start_async()
            .await?;
        let started = process.started();
        Ok((
            Target {
                addr: process.addr(),
                others: Vec::new(),
                attached_pid: None,
                managed: Some(Managed {
                    process,
                    remove_dir,
                }),
            },
            started,
        ))
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.managed {
            Some(managed) => managed.process.pid(),
            None => self.attached_pid,
        }
    }

    pub fn is_managed(&self) -> bool {
        self.managed.is_some()
    }

    /// The folder the started server runs in.
    pub fn dir(&self) -> Option<&Path> {
        self.managed.as_ref().map(|m| m.process.dir())
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn memory(&self) -> Option<Memory> {
        machine::memory(self.pid()?)
    }

    pub fn rss_kib(&self) -> Option<u64> {
        self.memory().map(|m| m.rss_kib)
    }

    pub fn cpu_seconds(&self) -> Option<f64> {
        machine::cpu_seconds(self.pid()?)
    }

    pub fn open_fds(&self) -> Option<usize> {
        machine::open_fds(self.pid()?)
    }

    /// Whether the started server has exited (always `false` when attached).
    pub fn has_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.managed.as_mut()?.process.try_wait().ok().flatten()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill9(&mut self) -> Result<()> {
        let Some(managed) = self.managed.as_mut() else {
            bail!("kill -9 needs a server started by the tool (--server-bin)");
        };
        managed.process.kill9()?;
        Ok(())
    }

    /// Starts the server again on the same folder and the same port.
    pub async fn restart(&mut self) -> Result<Started> {
        let Some(managed) = self.managed.as_mut() else {
            bail!("a restart needs a server started by the tool (--server-bin)");
        };
        let started = managed.process.restart_async().await?;
        self.addr = managed.process.addr();
        Ok(started)
    }

    /// Stops a started server (SIGTERM, then SIGKILL after 10 s) and removes its temporary
    /// folder. Does nothing to an attached server.
    pub async fn shutdown(mut self) -> Result<()> {
        let Some(mut managed) = self.managed.take() else {
            return Ok(());
        };
        managed.process.terminate(Duration::from_secs(10)).await?;
        if managed.remove_dir {
            let dir = managed.process.dir().to_owned();
            drop(managed);
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
        Ok(())
    }
}
