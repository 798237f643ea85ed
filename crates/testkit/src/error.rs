//! What can go wrong while driving the server from outside.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Why a started server never printed `listening on`.
#[derive(Debug, Error)]
pub enum StartFailure {
    #[error("no `listening on` line within {0:?}")]
    Timeout(Duration),
    #[error("it exited before listening")]
    Exited,
    // Not a `#[source]`: the failure is shown inside the start error's message, not after it.
    #[error("its output could not be read: {0}")]
    Read(std::io::Error),
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot start {}", bin.display())]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The process started but did not listen; `stderr` is what it wrote there.
    #[error("the server ({}) did not start: {why}\n{}", bin.display(), last_lines(stderr, 10))]
    NotListening {
        bin: PathBuf,
        why: StartFailure,
        stderr: String,
    },
    #[error("unreadable listening address {0:?}")]
    Address(String),
    #[error("the server is not running")]
    NotRunning,
    #[error("the server is still running")]
    StillRunning,
    #[error("kill -{name} {pid} failed")]
    Signal { name: String, pid: u32 },
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    #[error("HTTP error")]
    Http(#[from] hyper::Error),
    #[error("bad request")]
    Request(#[from] hyper::http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("psql {command}: {stderr}")]
    Psql { command: String, stderr: String },
    #[error("a background task failed")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The last `count` lines of `text`, in order.
pub fn last_lines(text: &str, count: usize) -> String {
    let mut lines: Vec<&str> = text.lines().rev().take(count).collect();
    lines.reverse();
    lines.join("\n")
}
