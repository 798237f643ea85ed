//! A few robots run inside the parent with the `rpa-robot` library (P3's registered robots,
//! P7's robot that waits across the restart).

use std::time::{Duration, Instant};

use rpa_robot::{Event, Robot, RobotConfig, RobotError};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cli::Common;
use crate::trigger::now_us;
use crate::wire::{robot_address, robot_name};

#[derive(Debug)]
pub(super) enum RobotEvent {
    /// Connected (and, for an extended robot, registered).
    Connected {
        at: Instant,
    },
    Package {
        job_id: i64,
        due_us: Option<i64>,
        received_us: i64,
        at: Instant,
    },
    Closed {
        reason: String,
    },
    ConnectFailed {
        error: String,
    },
}

pub(super) struct LibRobot {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    pub(super) events: mpsc::UnboundedReceiver<RobotEvent>,
}

impl LibRobot {
    /// Robot `index` of the run's address space. With `reconnect`, it connects again (every
    /// 20 ms until it succeeds) whenever its connection ends.
    pub(super) fn spawn(common: &Common, ws_url: &str, index: usize, reconnect: bool) -> LibRobot {
        let mut config = RobotConfig::new(
            ws_url,
            robot_name(index),
            robot_address(&common.robot_prefix, index),
        );
        config.dialect = common.dialect;
        config.extended = common.extended;
        let (stop, stopped) = watch::channel(false);
        let (events_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(config, reconnect, stopped, events_tx));
        LibRobot { stop, task, events }
    }

    /// Waits for the next event, at most `timeout`.
    pub(super) async fn next(&mut self, timeout: Duration) -> Option<RobotEvent> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Closes the connection (code 1000) and ends the task.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn run(
    config: RobotConfig,
    reconnect: bool,
    mut stopped: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<RobotEvent>,
) {
    loop {
        let connecting = Robot::connect(config.clone());
        let robot = tokio::select! {
            _ = stopped.changed() => return,
            result = connecting => result,
        };
        let mut robot = match robot {
            Ok(robot) => robot,
            Err(error) => {
                let _ = events.send(RobotEvent::ConnectFailed {
                    error: error.to_string(),
                });
                if !reconnect {
                    return;
                }
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(Duration::from_millis(20)) => continue,
                }
            }
        };
        let _ = events.send(RobotEvent::Connected { at: Instant::now() });
        loop {
            let event = tokio::select! {
                _ = stopped.changed() => {
                    let _ = robot.close().await;
                    return;
                }
                event = robot.next_event() => event,
            };
            match event {
                Ok(Event::Package { job_id, package }) => {
                    let _ = events.send(RobotEvent::Package {
                        job_id,
                        due_us: package.get("due_us").and_then(Value::as_i64),
                        received_us: now_us(),
                        at: Instant::now(),
                    });
                }
                Ok(Event::Closed { code, reason }) => {
                    let _ = events.send(RobotEvent::Closed {
                        reason: format!("closed ({code:?}) {reason}"),
                    });
                    break;
                }
                Ok(_) | Err(RobotError::Protocol(_)) => {}
                Err(error) => {
                    let _ = events.send(RobotEvent::Closed {
                        reason: error.to_string(),
                    });
                    break;
                }
            }
        }
        if !reconnect {
            return;
        }
    }
}
