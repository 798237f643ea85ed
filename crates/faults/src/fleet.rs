//! Robots inside the harness process (rpa-robot's library): each keeps a connection open,
//! reconnects when it drops (the server was killed or stopped), records every package it
//! receives in the shared ledger and reports success on it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpa_robot::{Event, Robot, RobotConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::Target;
use crate::checker::{Delivery, Ledger};
use crate::clock::now_us;

/// How long a robot waits before it reconnects.
const RETRY: Duration = Duration::from_millis(100);

/// The ledger the robots and the triggers write into.
pub type SharedLedger = Arc<Mutex<Ledger>>;

pub fn lock(ledger: &SharedLedger) -> std::sync::MutexGuard<'_, Ledger> {
    ledger
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How one robot behaves.
#[derive(Debug, Clone)]
pub struct RobotSpec {
    pub name: String,
    pub address: String,
    /// Extended (protocol 2, acknowledges) or field robot.
    pub extended: bool,
    /// Report success on every package.
    pub report: bool,
    /// Where it connects, when not to the fleet's URL (e.g. through a proxy).
    pub url: Option<String>,
}

impl RobotSpec {
    pub fn new(index: usize, extended: bool) -> RobotSpec {
        RobotSpec {
            name: format!("FAULT-ROBOT-{index}"),
            // Locally administered MACs, one per robot.
            address: format!("02FA{:08X}", index),
            extended,
            report: true,
            url: None,
        }
    }

    pub fn target(&self) -> Target {
        Target::robot(&self.name, &self.address)
    }
}

/// What the harness can see of a running robot.
#[derive(Debug, Default)]
pub struct RobotState {
    pub connected: AtomicBool,
    pub connections: AtomicU64,
    /// Close codes the server sent, in order (`None`: dropped without a close frame).
    pub closes: Mutex<Vec<Option<u16>>>,
}

pub struct RobotHandle {
    pub spec: RobotSpec,
    pub state: Arc<RobotState>,
    task: JoinHandle<()>,
}

/// A set of robots sharing a ledger.
pub struct Fleet {
    pub robots: Vec<RobotHandle>,
    ledger: SharedLedger,
    /// Added to the harness's clock when a delivery is stamped: the server's clock offset when
    /// it runs under libfaketime, so that "early" compares on the server's timeline.
    pub offset_us: Arc<AtomicI64>,
    /// Robots stop reconnecting once this is true.
    stop: watch::Sender<bool>,
    url: Arc<Mutex<String>>,
}

impl Fleet {
    pub fn new(url: &str, ledger: SharedLedger) -> Fleet {
        let (stop, _) = watch::channel(false);
        Fleet {
            robots: Vec::new(),
            ledger,
            offset_us: Arc::new(AtomicI64::new(0)),
            stop,
            url: Arc::new(Mutex::new(url.to_owned())),
        }
    }

    /// Where robots connect from now on (their next reconnection).
    pub fn set_url(&self, url: &str) {
        *self
            .url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = url.to_owned();
    }

    pub fn add(&mut self, spec: RobotSpec) {
        let state = Arc::new(RobotState::default());
        let task = tokio::spawn(run_robot(
            spec.clone(),
            Arc::clone(&state),
            Arc::clone(&self.ledger),
            Arc::clone(&self.offset_us),
            Arc::clone(&self.url),
            self.stop.subscribe(),
        ));
        self.robots.push(RobotHandle { spec, state, task });
    }

    pub fn targets(&self) -> Vec<Target> {
        self.robots.iter().map(|r| r.spec.target()).collect()
    }

    pub fn addresses(&self) -> Vec<String> {
        self.robots.iter().map(|r| r.spec.address.clone()).collect()
    }

    /// Stops every robot (closing its connection).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for robot in self.robots {
            let _ = tokio::time::timeout(Duration::from_secs(5), robot.task).await;
        }
    }
}

async fn run_robot(
    spec: RobotSpec,
    state: Arc<RobotState>,
    ledger: SharedLedger,
    offset: Arc<AtomicI64>,
    url: Arc<Mutex<String>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let url_now = match &spec.url {
            Some(own) => own.clone(),
            None => url
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        };
        let mut config = RobotConfig::new(url_now, &spec.name, &spec.address);
        config.extended = spec.extended;
        config.user = Some(serde_json::Value::from(4));
        let connected = tokio::select! {
            connected = Robot::connect(config) => connected,
            _ = stop.changed() => return,
        };
        if let Ok(mut robot) = connected {
            state.connections.fetch_add(1, Ordering::Relaxed);
            state.connected.store(true, Ordering::Relaxed);
            let close = serve(&spec, &mut robot, &ledger, &offset, &mut stop).await;
            state.connected.store(false, Ordering::Relaxed);
            match close {
                Some(code) => state
                    .closes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(code),
                None => {
                    let _ = robot.close().await;
                    return;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Serves one connection. `Some(close code)` when the connection ended, `None` when the fleet
/// is stopping.
async fn serve(
    spec: &RobotSpec,
    robot: &mut Robot,
    ledger: &SharedLedger,
    offset: &AtomicI64,
    stop: &mut watch::Receiver<bool>,
) -> Option<Option<u16>> {
    loop {
        let event = tokio::select! {
            event = robot.next_event() => event,
            _ = stop.changed() => return None,
        };
        match event {
            Ok(Event::Package { job_id, package }) => {
                let received_us = now_us() + offset.load(Ordering::Relaxed);
                lock(ledger).deliveries.push(Delivery::from_package(
                    &spec.address,
                    job_id,
                    &package,
                    received_us,
                ));
                if spec.report && robot.report(job_id, true, None).await.is_err() {
                    return Some(None);
                }
            }
            Ok(Event::Closed { code, .. }) => return Some(code),
            Ok(_) | Err(rpa_robot::RobotError::Protocol(_)) => {}
            Err(_) => return Some(None),
        }
    }
}
