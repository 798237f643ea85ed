//! What the parent and its worker processes say to each other: one JSON object per line,
//! commands on the worker's stdin, replies on its stdout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Connect (and register) the worker's robots whose index is below `upto` (all when
    /// `None`); robots already connected answer at once. `concurrency` connections at a time
    /// (0: all at once). A failed attempt is retried `retries` times.
    Connect {
        upto: Option<usize>,
        concurrency: usize,
        timeout_ms: u64,
        retries: u32,
    },
    /// Every robot drops its connection (TCP FIN, no closing handshake).
    Drop {
        timeout_ms: u64,
    },
    Stats,
    /// Zero every robot's ping count (so that a hold counts its own pings).
    ResetPings,
    /// The deliveries recorded since the last collect.
    Collect,
    /// Close every connection (code 1000) and exit.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Ready {
        robots: usize,
    },
    Connected(ConnectReport),
    Dropped {
        still_connected: usize,
        elapsed_us: u64,
    },
    Stats(WorkerStats),
    PingsReset,
    Deliveries {
        items: Vec<Delivery>,
    },
    Bye,
    Error {
        message: String,
    },
}

/// The outcome of a connect command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectReport {
    /// Robots that took part.
    pub robots: usize,
    /// Robots newly connected and registered.
    pub connected: usize,
    /// Robots that were connected already.
    pub already: usize,
    /// Robots still not connected after every retry (or the timeout).
    pub failed: usize,
    /// Attempts that failed (TCP connect, WebSocket upgrade, registration), retried or not.
    pub failed_attempts: u64,
    /// Failure messages and how often each was seen.
    pub errors: BTreeMap<String, u64>,
    /// For each newly connected robot: microseconds from the command to its registration (field
    /// robots: to the metadata written; extended robots: to `registered` received).
    pub handshake_us: Vec<u64>,
    pub elapsed_us: u64,
}

/// Counters of a worker's robots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub robots: usize,
    pub connected: usize,
    /// Connections that ended without a drop or shutdown command.
    pub unexpected_drops: u64,
    /// Why they ended (close code, EOF, error) and how often.
    pub drop_reasons: BTreeMap<String, u64>,
    /// Pings per robot: least, most, and the sum over the worker's robots.
    pub pings_min: u64,
    pub pings_max: u64,
    pub pings_sum: u64,
    pub deliveries: u64,
    pub acks_sent: u64,
    pub reports_sent: u64,
    /// Frames the robot could not read, declined metadata, `error` messages, failed sends.
    pub problems: BTreeMap<String, u64>,
}

impl WorkerStats {
    /// Adds another worker's counters to these.
    pub fn merge(&mut self, other: &WorkerStats) {
        let first = self.robots == 0;
        self.robots += other.robots;
        self.connected += other.connected;
        self.unexpected_drops += other.unexpected_drops;
        for (reason, n) in &other.drop_reasons {
            *self.drop_reasons.entry(reason.clone()).or_default() += n;
        }
        if other.robots > 0 {
            self.pings_min = if first {
                other.pings_min
            } else {
                self.pings_min.min(other.pings_min)
            };
            self.pings_max = self.pings_max.max(other.pings_max);
        }
        self.pings_sum += other.pings_sum;
        self.deliveries += other.deliveries;
        self.acks_sent += other.acks_sent;
        self.reports_sent += other.reports_sent;
        for (problem, n) in &other.problems {
            *self.problems.entry(problem.clone()).or_default() += n;
        }
    }
}

impl ConnectReport {
    pub fn merge(&mut self, other: ConnectReport) {
        self.robots += other.robots;
        self.connected += other.connected;
        self.already += other.already;
        self.failed += other.failed;
        self.failed_attempts += other.failed_attempts;
        for (error, n) in other.errors {
            *self.errors.entry(error).or_default() += n;
        }
        self.handshake_us.extend(other.handshake_us);
        self.elapsed_us = self.elapsed_us.max(other.elapsed_us);
    }
}

/// A package a robot received: its job, the `due_us` the trigger put in the package (when
/// there was one), the receive time (microseconds since the Unix epoch) and the robot (its
/// global index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(rename = "j")]
    pub job_id: i64,
    #[serde(rename = "d")]
    pub due_us: Option<i64>,
    #[serde(rename = "r")]
    pub received_us: i64,
    #[serde(rename = "b")]
    pub robot: u32,
}

/// The robots a worker process holds: `count` robots from global index `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub first: usize,
    pub count: usize,
}

/// Splits `total` robots over processes of at most `per_process` robots each.
pub fn plan(total: usize, per_process: usize) -> Vec<Share> {
    let per_process = per_process.max(1);
    let mut shares = Vec::new();
    let mut first = 0;
    while first < total {
        let count = per_process.min(total - first);
        shares.push(Share { first, count });
        first += count;
    }
    shares
}

/// Robots of a share that a `Connect { upto }` of the whole fleet reaches, filling the
/// processes in order: how many of `target` robots fall in each share.
pub fn upto_per_share(shares: &[Share], target: usize) -> Vec<usize> {
    shares
        .iter()
        .map(|share| target.saturating_sub(share.first).min(share.count))
        .collect()
}

/// The MAC-like address of robot `index` (12 upper-case hex digits, so the server keeps it as
/// written): a 2-digit prefix and the index.
pub fn robot_address(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:010X}")
}

pub fn robot_name(index: usize) -> String {
    format!("LOADGEN-{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert_eq!(
            plan(19_000, 9_000),
            vec![
                Share {
                    first: 0,
                    count: 9_000
                },
                Share {
                    first: 9_000,
                    count: 9_000
                },
                Share {
                    first: 18_000,
                    count: 1_000
                }
            ]
        );
        assert_eq!(plan(20, 9_000).len(), 1);
        assert!(plan(0, 9_000).is_empty());
        assert_eq!(plan(3, 0).len(), 3);
    }

    #[test]
    fn fractions_fill_processes_in_order() {
        let shares = plan(19_000, 9_000);
        assert_eq!(upto_per_share(&shares, 4_750), vec![4_750, 0, 0]);
        assert_eq!(upto_per_share(&shares, 9_500), vec![9_000, 500, 0]);
        assert_eq!(upto_per_share(&shares, 19_000), vec![9_000, 9_000, 1_000]);
    }

    #[test]
    fn addresses_are_twelve_hex_digits() {
        assert_eq!(robot_address("AC", 0), "AC0000000000");
        assert_eq!(robot_address("AC", 18_999), "AC0000004A37");
        assert_eq!(robot_address("AC", 18_999).len(), 12);
    }

    #[test]
    fn lines_round_trip() {
        let command = Command::Connect {
            upto: Some(5),
            concurrency: 0,
            timeout_ms: 1000,
            retries: 2,
        };
        let line = serde_json::to_string(&command).unwrap();
        assert!(line.starts_with("{\"cmd\":\"connect\""));
        assert_eq!(serde_json::from_str::<Command>(&line).unwrap(), command);
        let reply = Reply::Deliveries {
            items: vec![Delivery {
                job_id: 7,
                due_us: Some(1),
                received_us: 2,
                robot: 3,
            }],
        };
        let line = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            line,
            r#"{"reply":"deliveries","items":[{"j":7,"d":1,"r":2,"b":3}]}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), reply);
    }

    #[test]
    fn stats_merge() {
        let mut total = WorkerStats::default();
        total.merge(&WorkerStats {
            robots: 2,
            pings_min: 5,
            pings_max: 6,
            pings_sum: 11,
            ..WorkerStats::default()
        });
        total.merge(&WorkerStats {
            robots: 1,
            pings_min: 3,
            pings_max: 3,
            pings_sum: 3,
            unexpected_drops: 1,
            drop_reasons: [("eof".to_owned(), 1)].into(),
            ..WorkerStats::default()
        });
        assert_eq!(total.robots, 3);
        assert_eq!(total.pings_min, 3);
        assert_eq!(total.pings_max, 6);
        assert_eq!(total.pings_sum, 14);
        assert_eq!(total.drop_reasons["eof"], 1);
    }
}
