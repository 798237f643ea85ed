//! The parent's side of the robots: worker processes (the tool re-executed with the hidden
//! `worker` subcommand), each holding one share of the robots from its own source address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use anyhow::bail;
use anyhow::{Result, anyhow};
use rpa_protocol::Dialect;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command as Process};

use crate::wire::{
    Command, ConnectReport, Delivery, Reply, Share, WorkerStats, plan, upto_per_share,
};

/// How robots behave and how they are spread.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub robots: usize,
    pub per_process: usize,
    /// The server's instances: worker process k connects to instance k modulo their number.
    pub servers: Vec<SocketAddr>,
    pub path: String,
    pub prefix: String,
    pub dialect: Dialect,
    pub extended: bool,
    pub report: bool,
}

/// The source address of worker `k`: 127.0.0.(2+k).
pub fn source_address(k: usize) -> Result<IpAddr> {
    let last = u8::try_from(k + 2)
        .ok()
        .filter(|last| *last < 255)
        .ok_or_else(|| anyhow!("more than 253 worker processes"))?;
    Ok(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    share: Share,
    source: IpAddr,
}

impl Worker {
    async fn send(&mut self, command: &Command) -> Result<()> {
        let mut line = serde_json::to_vec(command)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn reply(&mut self, timeout: Duration) -> Result<Reply> {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .map_err(|_| anyhow!("worker {} did not answer within {timeout:?}", self.source))??;
        let Some(line) = line else {
            let status = self.child.try_wait().ok().flatten();
            bail!(
                "worker {} exited ({status:?}); see its standard error above",
                self.source
            );
        };
        let reply: Reply = serde_json::from_str(&line)?;
        if let Reply::Error { message } = &reply {
            bail!("worker {}: {message}", self.source);
        }
        Ok(reply)
    }
}

pub struct Fleet {
    workers: Vec<Worker>,
    pub spec: FleetSpec,
}

impl Fleet {
    /// Starts one worker per share and waits until each holds its robots (none connected yet).
    pub async fn start(spec: FleetSpec) -> Result<Fleet> {
        let exe = std::env::current_exe()?;
        let mut workers = Vec::new();
        for (k, share) in plan(spec.robots, spec.per_process).into_iter().enumerate() {
            let source = source_address(k)?;
            let mut command = Process::new(&exe);
            command
                .arg("worker")
                .args([
                    "--server",
                    &spec.servers[k % spec.servers.len()].to_string(),
                ])
                .args(["--path", &spec.path])
                .args(["--source", &source.to_string()])
                .args(["--first", &share.first.to_string()])
                .args(["--count", &share.count.to_string()])
                .args(["--prefix", &spec.prefix])
                .args(["--dialect", spec.dialect.key()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            if spec.extended {
                command.arg("--extended");
            }
            if spec.report {
                command.arg("--report");
            }
            let mut child = command.spawn()?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                bail!("the worker's pipes are not captured");
            };
            workers.push(Worker {
                child,
                stdin,
                lines: BufReader::new(stdout).lines(),
                share,
                source,
            });
        }
        for worker in &mut workers {
            match worker.reply(Duration::from_secs(30)).await? {
                Reply::Ready { .. } => {}
                other => bail!("worker {}: unexpected first line {other:?}", worker.source),
            }
        }
        Ok(Fleet { workers, spec })
    }

    pub fn processes(&self) -> usize {
        self.workers.len()
    }

    /// CPU time (user + system) the worker processes used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.workers
            .iter()
            .filter_map(|w| w.child.id().and_then(crate::machine::cpu_seconds))
            .sum()
    }

    /// Sends one command to each worker (all first, then reads every answer).
    async fn each(&mut self, commands: Vec<Command>, timeout: Duration) -> Result<Vec<Reply>> {
        for (worker, command) in self.workers.iter_mut().zip(&commands) {
            worker.send(command).await?;
        }
        let replies = futures_util::future::join_all(
            self.workers.iter_mut().map(|worker| worker.reply(timeout)),
        )
        .await;
        replies.into_iter().collect()
    }

    /// Connects the first `upto` robots of the fleet (all when `None`), `concurrency` at a time
    /// per process (0: all at once).
    pub async fn connect(
        &mut self,
        upto: Option<usize>,
        concurrency: usize,
        timeout: Duration,
        retries: u32,
    ) -> Result<ConnectReport> {
        let shares: Vec<Share> = self.workers.iter().map(|w| w.share).collect();
        let per_share = upto_per_share(&shares, upto.unwrap_or(self.spec.robots));
        let commands = per_share
            .iter()
            .map(|&n| Command::Connect {
                upto: Some(n),
                concurrency,
                timeout_ms: timeout.as_millis() as u64,
                retries,
            })
            .collect();
        let wait = timeout * (retries + 1) + Duration::from_secs(30 + 5 * u64::from(retries));
        let mut total = ConnectReport::default();
        for reply in self.each(commands, wait).await? {
            match reply {
                Reply::Connected(report) => total.merge(report),
                other => bail!("unexpected answer to connect: {other:?}"),
            }
        }
        Ok(total)
    }

    /// Every robot drops its connection; the number still connected after `timeout`.
    pub async fn drop_all(&mut self, timeout: Duration) -> Result<usize> {
        let command = Command::Drop {
            timeout_ms: timeout.as_millis() as u64,
        };
        let commands = vec![command; self.workers.len()];
        let mut still = 0;
        for reply in self
            .each(commands, timeout + Duration::from_secs(10))
            .await?
        {
            match reply {
                Reply::Dropped {
                    still_connected, ..
                } => still += still_connected,
                other => bail!("unexpected answer to drop: {other:?}"),
            }
        }
        Ok(still)
    }

    pub async fn stats(&mut self) -> Result<WorkerStats> {
        let commands = vec![Command::Stats; self.workers.len()];
        let mut total = WorkerStats::default();
        for reply in self.each(commands, Duration::from_secs(30)).await? {
            match reply {
                Reply::Stats(stats) => total.merge(&stats),
                other => bail!("unexpected answer to stats: {other:?}"),
            }
        }
        Ok(total)
    }

    pub async fn reset_pings(&mut self) -> Result<()> {
        let commands = vec![Command::ResetPings; self.workers.len()];
        for reply in self.each(commands, Duration::from_secs(30)).await? {
            if reply != Reply::PingsReset {
                bail!("unexpected answer to reset_pings: {reply:?}");
            }
        }
        Ok(())
    }

    /// Deliveries recorded since the last collect, from every process.
    pub async fn collect(&mut self) -> Result<Vec<Delivery>> {
        let commands = vec![Command::Collect; self.workers.len()];
        let mut all = Vec::new();
        for reply in self.each(commands, Duration::from_secs(60)).await? {
            match reply {
                Reply::Deliveries { items } => all.extend(items),
                other => bail!("unexpected answer to collect: {other:?}"),
            }
        }
        Ok(all)
    }

    /// Closes every robot (code 1000) and waits for the processes to exit.
    pub async fn shutdown(mut self) {
        let commands = vec![Command::Shutdown; self.workers.len()];
        let _ = self.each(commands, Duration::from_secs(20)).await;
        for worker in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(5), worker.child.wait())
                .await
                .is_err()
            {
                let _ = worker.child.start_kill();
                let _ = worker.child.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses() {
        assert_eq!(source_address(0).unwrap().to_string(), "127.0.0.2");
        assert_eq!(source_address(2).unwrap().to_string(), "127.0.0.4");
        assert_eq!(source_address(252).unwrap().to_string(), "127.0.0.254");
        assert!(source_address(253).is_err());
    }
}
