#![doc = include_str!("../README.md")]

mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rpa_protocol::RobotAddress;

pub use session::{CloseRequest, ConnectionId, Outbound, PushError, Robot, Sending, Session};

/// The close code a connection gets when a newer connection announces the same robot.
pub const CLOSE_REPLACED: u16 = 4000;

#[derive(Debug, Default)]
struct Inner {
    connections: HashMap<ConnectionId, Arc<Session>>,
    robots: HashMap<RobotAddress, Arc<Session>>,
}

/// Every live connection, and for each registered robot the connection that speaks for it.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    queue_capacity: usize,
}

/// What [`Registry::register`] changed.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The connection that spoke for the robot before, now asked to close with
    /// [`CLOSE_REPLACED`]. The robot stays online: its new connection speaks for it.
    pub replaced: Option<Arc<Session>>,
    /// The robot this same connection had registered before under another address, which is
    /// now offline.
    pub abandoned: Option<RobotAddress>,
}

impl Registry {
    /// `queue_capacity` bounds each connection's outbound queue.
    pub fn new(queue_capacity: usize) -> Registry {
        Registry {
            inner: Mutex::new(Inner::default()),
            queue_capacity,
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every critical section is a few map operations that cannot panic half-way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection, with a fresh id, not yet speaking for any robot.
    pub fn connect(&self) -> Arc<Session> {
        self.connect_with(None)
    }

    /// A new connection that presented robot credential `credential` (if any) on its upgrade.
    pub fn connect_with(&self, credential: Option<i64>) -> Arc<Session> {
        let session = Arc::new(Session::new(self.queue_capacity, credential));
        self.inner()
            .connections
            .insert(session.id(), Arc::clone(&session));
        session
    }

    /// Asks every connection that presented credential `credential` to close (it was revoked).
    /// Returns how many there were.
    pub fn close_credential(&self, credential: i64, code: u16, reason: &str) -> usize {
        // Revocations are rare: a scan of the live connections is cheaper than an index kept up
        // on every connection.
        let holders: Vec<Arc<Session>> = self
            .inner()
            .connections
            .values()
            .filter(|session| session.credential() == Some(credential))
            .cloned()
            .collect();
        for session in &holders {
            session.close(code, reason);
        }
        holders.len()
    }

    /// The credentials the live connections presented, each once.
    pub fn credentials_in_use(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .inner()
            .connections
            .values()
            .filter_map(|session| session.credential())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The connection's metadata was accepted: it now speaks for `robot.address`. A connection
    /// that spoke for that robot before is asked to close.
    pub fn register(&self, session: &Arc<Session>, robot: Robot) -> Registered {
        let address = robot.address.clone();
        let previous = session.robot();
        session.set_robot(Some(robot));
        let mut inner = self.inner();
        let abandoned = previous.map(|p| p.address).filter(|old| *old != address);
        if let Some(old) = &abandoned
            && inner
                .robots
                .get(old)
                .is_some_and(|current| Arc::ptr_eq(current, session))
        {
            inner.robots.remove(old);
        }
        let replaced = inner
            .robots
            .insert(address, Arc::clone(session))
            .filter(|old| !Arc::ptr_eq(old, session));
        drop(inner);
        if let Some(old) = &replaced {
            old.close(
                CLOSE_REPLACED,
                "replaced by a newer connection of the same robot",
            );
        }
        Registered {
            replaced,
            abandoned,
        }
    }

    /// The connection ended. Returns the robot it spoke for if it still did, which is then
    /// offline; `None` when it never registered or a newer connection had replaced it.
    pub fn disconnect(&self, session: &Session) -> Option<RobotAddress> {
        let mut inner = self.inner();
        inner.connections.remove(&session.id());
        let address = session.robot()?.address;
        let current = inner.robots.get(&address)?;
        if current.id() != session.id() {
            return None;
        }
        inner.robots.remove(&address);
        Some(address)
    }

    /// The connection speaking for the robot, if it is online.
    pub fn robot(&self, address: &RobotAddress) -> Option<Arc<Session>> {
        self.inner().robots.get(address).cloned()
    }

    pub fn is_online(&self, address: &RobotAddress) -> bool {
        self.inner().robots.contains_key(address)
    }

    pub fn connection(&self, id: ConnectionId) -> Option<Arc<Session>> {
        self.inner().connections.get(&id).cloned()
    }

    /// Every live connection, registered or not (for shutdown).
    pub fn connections(&self) -> Vec<Arc<Session>> {
        self.inner().connections.values().cloned().collect()
    }

    /// (live connections, online robots)
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.connections.len(), inner.robots.len())
    }
}
