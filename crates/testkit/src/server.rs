//! The real `socket-server` binary, started from outside in a folder of its own (its `data/`,
//! `packages/` and `serverLogs/` live there), told apart from the caller's environment, and
//! signalled, killed and started again on the same folder and port.
//!
//! The process is a `std::process::Child` read by two small threads (stdout for the
//! `listening on ADDR` line and then drained, stderr kept for diagnostics): tests start servers
//! from plain `#[test]` functions and from inside a current-thread tokio runtime, where no async
//! read could make progress while the start blocks. The `_async` variants are for the tools,
//! which share one runtime with their load: starts run on tokio's blocking pool, waits poll.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, StartFailure};

/// How long a start may take unless [`ServerCommand::start_timeout`] says otherwise.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The server's own settings from the environment: a developer's shell must not change what a
/// test or a tool runs.
const SETTINGS_VARS: [&str; 3] = ["PORT", "DATABASE_URL", "RUST_LOG"];
const SETTINGS_PREFIX: &str = "SOCKET_SERVER_";

/// After a kill the port may stay taken for a moment: a restart on it tries again this often.
const PORT_RETRIES: u32 = 20;
const PORT_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// How to start the server: binary, folder, flags, environment.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    bin: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_removed: Vec<String>,
    env_removed_prefixes: Vec<String>,
    stderr_file: Option<PathBuf>,
    start_timeout: Duration,
}

impl ServerCommand {
    /// `bin` run in `dir` with `--listen 127.0.0.1:0 --log-stderr false` (unless the flags given
    /// set those themselves).
    pub fn new(bin: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> ServerCommand {
        ServerCommand {
            bin: bin.into(),
            dir: dir.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_removed: Vec::new(),
            env_removed_prefixes: Vec::new(),
            stderr_file: None,
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> ServerCommand {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> ServerCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `flag value`.
    pub fn flag(self, flag: &str, value: impl ToString) -> ServerCommand {
        self.arg(flag).arg(value.to_string())
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> ServerCommand {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// Not inherited from this process (besides the server's own settings, never inherited).
    pub fn env_remove(mut self, key: &str) -> ServerCommand {
        self.env_removed.push(key.to_owned());
        self
    }

    /// No variable starting with `prefix` is inherited.
    pub fn env_remove_prefix(mut self, prefix: &str) -> ServerCommand {
        self.env_removed_prefixes.push(prefix.to_owned());
        self
    }

    /// Appends the server's stderr to `path` (kept across restarts) instead of keeping it in
    /// memory.
    pub fn stderr_to_file(mut self, path: impl Into<PathBuf>) -> ServerCommand {
        self.stderr_file = Some(path.into());
        self
    }

    /// How long the server may take to print `listening on`.
    pub fn start_timeout(mut self, limit: Duration) -> ServerCommand {
        self.start_timeout = limit;
        self
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the server and waits for its `listening on` line. Blocks.
    pub fn start(self) -> Result<ServerProcess> {
        std::fs::create_dir_all(&self.dir)?;
        let stderr = StderrSink::new(self.stderr_file.as_deref());
        let launched = launch(&self, &stderr, "127.0.0.1:0")?;
        Ok(ServerProcess::new(self, stderr, launched))
    }

    /// [`ServerCommand::start`] on tokio's blocking pool.
    pub async fn start_async(self) -> Result<ServerProcess> {
        tokio::task::spawn_blocking(move || self.start()).await?
    }

    fn inherits(&self, key: &str) -> bool {
        !(SETTINGS_VARS.contains(&key)
            || key.starts_with(SETTINGS_PREFIX)
            || self.env_removed.iter().any(|removed| removed == key)
            || self
                .env_removed_prefixes
                .iter()
                .any(|prefix| key.starts_with(prefix.as_str())))
    }
}

/// When a start was made and how long the server took to print `listening on`.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub spawned_at: Instant,
    pub listening_after: Duration,
}

/// A started server process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    command: ServerCommand,
    stderr: StderrSink,
    child: Option<Child>,
    exited: Option<ExitStatus>,
    addr: SocketAddr,
    started: Started,
}

impl ServerProcess {
    fn new(command: ServerCommand, stderr: StderrSink, launched: Launched) -> ServerProcess {
        ServerProcess {
            command,
            stderr,
            child: Some(launched.child),
            exited: None,
            addr: launched.addr,
            started: launched.started,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn dir(&self) -> &Path {
        &self.command.dir
    }

    pub fn command(&self) -> &ServerCommand {
        &self.command
    }

    /// The last start.
    pub fn started(&self) -> Started {
        self.started
    }

    /// `None` once the process was killed or seen to exit.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) -> Result<()> {
        send_signal(self.pid().ok_or(Error::NotRunning)?, name)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            self.exited = Some(status);
        }
        Ok(self.exited)
    }

    /// Waits at most `limit` for the process to exit; `None` when it did not. Blocks.
    pub fn wait(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.reap()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// [`ServerProcess::wait`] without blocking the runtime.
    pub async fn wait_async(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.reap()? {
                return Ok(Some(status));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    fn reap(&mut self) -> Result<Option<ExitStatus>> {
        if self.child.is_none() && self.exited.is_none() {
            return Err(Error::NotRunning);
        }
        self.try_wait()
    }

    /// `kill -9` and reap: no shutdown at all.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            self.exited = Some(child.wait()?);
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL when it has not exited within `grace`: the exit status of a clean
    /// stop, `None` when it had to be killed or was not running.
    pub async fn terminate(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        if self.child.is_none() {
            return Ok(None);
        }
        self.signal("TERM")?;
        match self.wait_async(grace).await? {
            Some(status) => Ok(Some(status)),
            None => {
                self.kill9()?;
                Ok(None)
            }
        }
    }

    /// Starts the server again in the same folder on the same port, after a kill or an exit.
    /// Blocks.
    pub fn restart(&mut self) -> Result<Started> {
        let listen = self.listen_again()?;
        let launched = relaunch(&self.command, &self.stderr, &listen)?;
        Ok(self.install(launched))
    }

    /// [`ServerProcess::restart`] on tokio's blocking pool.
    pub async fn restart_async(&mut self) -> Result<Started> {
        let listen = self.listen_again()?;
        let (command, stderr) = (self.command.clone(), self.stderr.clone());
        let launched =
            tokio::task::spawn_blocking(move || relaunch(&command, &stderr, &listen)).await??;
        Ok(self.install(launched))
    }

    fn listen_again(&self) -> Result<String> {
        if self.child.is_some() {
            return Err(Error::StillRunning);
        }
        Ok(format!("127.0.0.1:{}", self.addr.port()))
    }

    fn install(&mut self, launched: Launched) -> Started {
        self.addr = launched.addr;
        self.child = Some(launched.child);
        self.exited = None;
        self.started = launched.started;
        launched.started
    }

    /// Today's log file (UTC date), as text; empty when there is none.
    pub fn log_today(&self) -> String {
        let name = chrono::Utc::now().format("%Y-%m-%d.log").to_string();
        read_lossy(&self.command.dir.join("serverLogs").join(name))
    }

    /// Every log file, oldest first, concatenated (a faked clock may name any day).
    pub fn logs(&self) -> String {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.command.dir.join("serverLogs"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        names.iter().map(|path| read_lossy(path)).collect()
    }

    /// What the server wrote to stderr, every start of it.
    pub fn stderr(&self) -> String {
        self.stderr.text_since(0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const EXIT_POLL: Duration = Duration::from_millis(10);

/// `kill -NAME PID`.
pub fn send_signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        return Err(Error::Signal {
            name: name.to_owned(),
            pid,
        });
    }
    Ok(())
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// The arguments the server is started with: `--listen LISTEN --log-stderr false` unless
/// `extra` sets them, then `extra`.
pub fn server_args(extra: &[String], listen: &str) -> Vec<String> {
    let mut args = Vec::new();
    if !has_flag(extra, "--listen") {
        args.push("--listen".to_owned());
        args.push(listen.to_owned());
    }
    if !has_flag(extra, "--log-stderr") {
        args.push("--log-stderr".to_owned());
        args.push("false".to_owned());
    }
    args.extend(extra.iter().cloned());
    args
}

/// Where the server's stderr goes: a file it is appended to, or memory.
#[derive(Debug, Clone)]
enum StderrSink {
    File(PathBuf),
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl StderrSink {
    fn new(file: Option<&Path>) -> StderrSink {
        match file {
            Some(path) => StderrSink::File(path.to_owned()),
            None => StderrSink::Memory(Arc::default()),
        }
    }

    fn len(&self) -> usize {
        match self {
            StderrSink::File(path) => std::fs::metadata(path).map_or(0, |m| m.len() as usize),
            StderrSink::Memory(buffer) => lock(buffer).len(),
        }
    }

    fn text_since(&self, offset: usize) -> String {
        let bytes = match self {
            StderrSink::File(path) => std::fs::read(path).unwrap_or_default(),
            StderrSink::Memory(buffer) => lock(buffer).clone(),
        };
        String::from_utf8_lossy(bytes.get(offset..).unwrap_or_default()).into_owned()
    }

    fn stdio(&self) -> Result<Stdio> {
        Ok(match self {
            StderrSink::File(path) => {
                Stdio::from(OpenOptions::new().create(true).append(true).open(path)?)
            }
            StderrSink::Memory(_) => Stdio::piped(),
        })
    }

    /// Keeps what the process writes to a piped stderr; the thread ends with the process.
    fn collect(&self, stderr: Option<ChildStderr>) -> Option<JoinHandle<()>> {
        let (StderrSink::Memory(buffer), Some(mut stderr)) = (self, stderr) else {
            return None;
        };
        let buffer = Arc::clone(buffer);
        Some(std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(read @ 1..) = stderr.read(&mut chunk) {
                lock(&buffer).extend_from_slice(&chunk[..read]);
            }
        }))
    }
}

fn lock(buffer: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    buffer.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// [`launch`] on a port that may still be held by the process before: tried again while the
/// server says `--listen` cannot bind.
fn relaunch(command: &ServerCommand, stderr: &StderrSink, listen: &str) -> Result<Launched> {
    let mut tries = 0;
    loop {
        match launch(command, stderr, listen) {
            Err(Error::NotListening { stderr: text, .. })
                if tries < PORT_RETRIES && text.contains("--listen") =>
            {
                tries += 1;
                std::thread::sleep(PORT_RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

struct Launched {
    child: Child,
    addr: SocketAddr,
    started: Started,
}

/// Spawns the server listening on `listen` and waits for its `listening on` line.
fn launch(command: &ServerCommand, stderr: &StderrSink, listen: &str) -> Result<Launched> {
    let mut process = Command::new(&command.bin);
    process
        .current_dir(&command.dir)
        .args(server_args(&command.args, listen))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr.stdio()?);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if !command.inherits(&key) {
            process.env_remove(key.as_ref());
        }
    }
    for (key, value) in &command.env {
        process.env(key, value);
    }
    let stderr_from = stderr.len();
    let spawned_at = Instant::now();
    let mut child = process.spawn().map_err(|source| Error::Spawn {
        bin: command.bin.clone(),
        source,
    })?;
    let collector = stderr.collect(child.stderr.take());
    let found = match child.stdout.take() {
        Some(stdout) => watch_stdout(stdout).recv_timeout(command.start_timeout),
        None => Err(RecvTimeoutError::Disconnected),
    };
    let failure = match found {
        Ok(Ok((addr, at))) => {
            return listening(&addr, spawned_at, at).map(|(addr, started)| Launched {
                child,
                addr,
                started,
            });
        }
        Ok(Err(error)) => StartFailure::Read(error),
        Err(RecvTimeoutError::Timeout) => StartFailure::Timeout(command.start_timeout),
        Err(RecvTimeoutError::Disconnected) => StartFailure::Exited,
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Some(collector) = collector {
        let _ = collector.join();
    }
    Err(Error::NotListening {
        bin: command.bin.clone(),
        why: failure,
        stderr: stderr.text_since(stderr_from),
    })
}

type Found = std::io::Result<(String, Instant)>;

/// Reads stdout on a thread of its own: sends the address of the `listening on` line (and when
/// it came), then keeps reading so that the server never blocks on a full pipe. The channel
/// closes without a word when stdout ends first.
fn watch_stdout(stdout: ChildStdout) -> mpsc::Receiver<Found> {
    let (sender, receiver) = mpsc::channel::<Found>();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    if let Some(addr) = text.trim().strip_prefix("listening on ")
                        && let Some(sender) = sender.take()
                    {
                        let _ = sender.send(Ok((addr.to_owned(), Instant::now())));
                    }
                }
                Err(error) => {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(Err(error));
                    }
                    return;
                }
            }
        }
    });
    receiver
}

fn listening(addr: &str, spawned_at: Instant, at: Instant) -> Result<(SocketAddr, Started)> {
    let addr: SocketAddr = addr.parse().map_err(|_| Error::Address(addr.to_owned()))?;
    // A server listening on all addresses is reached on loopback.
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    Ok((
        addr,
        Started {
            spawned_at,
            listening_after: at.saturating_duration_since(spawned_at),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn default_and_overridden_arguments() {
        assert_eq!(
            server_args(&[], "127.0.0.1:0"),
            ["--listen", "127.0.0.1:0", "--log-stderr", "false"]
        );
        assert_eq!(
            server_args(&strings(&["--ping-interval", "1s"]), "127.0.0.1:4100"),
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
            server_args(&strings(&["--listen=127.0.0.1:5000"]), "127.0.0.1:0"),
            ["--log-stderr", "false", "--listen=127.0.0.1:5000"]
        );
    }

    #[test]
    fn the_servers_settings_are_never_inherited() {
        let command = ServerCommand::new("socket-server", ".")
            .env_remove("LD_PRELOAD")
            .env_remove_prefix("FAKETIME");
        for key in [
            "PORT",
            "DATABASE_URL",
            "RUST_LOG",
            "SOCKET_SERVER_LISTEN",
            "LD_PRELOAD",
            "FAKETIME_NO_CACHE",
        ] {
            assert!(!command.inherits(key), "{key}");
        }
        assert!(command.inherits("PATH"));
        assert!(ServerCommand::new("socket-server", ".").inherits("LD_PRELOAD"));
    }
}
