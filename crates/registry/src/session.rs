//! One live connection: its identity, what it has announced, its bounded outbound queue and the
//! request to close it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rpa_protocol::{Dialect, RobotAddress};
use tokio::sync::Notify;

/// The id the server gives each connection: a random UUID, lower case, as the original did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(uuid::Uuid);

impl ConnectionId {
    pub fn new() -> ConnectionId {
        ConnectionId(uuid::Uuid::new_v4())
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        ConnectionId::new()
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A frame waiting to be written to the robot. `job` names the sending it carries, so that the
/// connection can confirm it once written, or hand it back if the connection ends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub text: String,
    pub job: Option<Sending>,
}

/// Sending number `attempt` of job `job_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sending {
    pub job_id: i64,
    pub attempt: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The robot does not read fast enough: its queue is at its bound.
    #[error("the robot's outbound queue is full")]
    Full,
    /// The connection is closing or closed.
    #[error("the robot's connection is closing")]
    Closed,
}

/// Why the server wants a connection closed: a WebSocket close code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: String,
}

/// What a connection has announced in its accepted metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Robot {
    pub address: RobotAddress,
    pub dialect: Dialect,
    pub extended: bool,
}

#[derive(Debug, Default)]
struct State {
    robot: Option<Robot>,
    queue: VecDeque<Outbound>,
    close: Option<CloseRequest>,
}

/// A live connection. Shared between its connection task, the registry and whoever sends to it.
#[derive(Debug)]
pub struct Session {
    id: ConnectionId,
    /// The robot credential the connection presented on its upgrade, if any: revoking it
    /// closes the connection.
    credential: Option<i64>,
    capacity: usize,
    state: Mutex<State>,
    closed: AtomicBool,
    /// Jobs wait because this robot's queue was full: the connection asks for them once it has
    /// written what is queued.
    backlog: AtomicBool,
    /// Wakes the connection task: something was queued, or a close was requested.
    wake: Notify,
}

impl Session {
    pub(crate) fn new(capacity: usize, credential: Option<i64>) -> Session {
        Session {
            id: ConnectionId::new(),
            credential,
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            closed: AtomicBool::new(false),
            backlog: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-changed: every critical
        // section is a single push, pop or assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The id of the robot credential the connection presented, if any.
    pub fn credential(&self) -> Option<i64> {
        self.credential
    }

    /// The robot this connection registered, if its metadata was accepted.
    pub fn robot(&self) -> Option<Robot> {
        self.state().robot.clone()
    }

    pub(crate) fn set_robot(&self, robot: Option<Robot>) {
        self.state().robot = robot;
    }

    /// Queues a frame for the robot. Refused when the queue is at its bound or the connection is
    /// closing: the caller decides what a refused sending means.
    pub fn push(&self, item: Outbound) -> Result<(), PushError> {
        {
            let mut state = self.state();
            if self.closed.load(Ordering::Acquire) || state.close.is_some() {
                return Err(PushError::Closed);
            }
            if state.queue.len() >= self.capacity {
                return Err(PushError::Full);
            }
            state.queue.push_back(item);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// The next queued frame, if any.
    pub fn pop(&self) -> Option<Outbound> {
        self.state().queue.pop_front()
    }

    pub fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// Frames the queue can still take.
    pub fn room(&self) -> usize {
        self.capacity.saturating_sub(self.queued())
    }

    /// Records that jobs wait for room in this robot's queue, and wakes the connection so it
    /// asks for them as soon as it has written what is queued.
    pub fn set_backlog(&self) {
        self.backlog.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// True (once) when jobs were waiting for room.
    pub fn take_backlog(&self) -> bool {
        self.backlog.swap(false, Ordering::AcqRel)
    }

    /// Asks the connection task to close the socket with `code`. The first request wins.
    pub fn close(&self, code: u16, reason: &str) {
        {
            let mut state = self.state();
            if state.close.is_some() {
                return;
            }
            state.close = Some(CloseRequest {
                code,
                reason: reason.to_owned(),
            });
        }
        self.wake.notify_one();
    }

    /// The pending close request, if any.
    pub fn close_request(&self) -> Option<CloseRequest> {
        self.state().close.clone()
    }

    /// Resolves when something was queued or a close was requested since the last call. A wake
    /// that came while nobody waited is kept, so none is lost between two calls.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Marks the connection as ended and returns what was queued but never written.
    pub fn finish(&self) -> Vec<Outbound> {
        self.closed.store(true, Ordering::Release);
        self.state().queue.drain(..).collect()
    }

    pub fn is_finished(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
