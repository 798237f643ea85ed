//! Job triggers: their bodies, and a pool of keep-alive clients that sends them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use rpa_testkit::Trigger;

use crate::http::{self, StatusCounts};
use crate::wire::{robot_address, robot_name};

pub const PACKAGE_NAME: &str = "loadgen-pkg";

pub use rpa_testkit::{now_us, rfc3339_micros};

/// `POST /api/jobs` for robot `robot`, due at `at_us` (with microseconds). `due_us` goes into
/// the `Package` as an extra key, which the server delivers verbatim, so the robot can tell its
/// lateness.
pub fn job_body(prefix: &str, robot: usize, at_us: i64, due_us: Option<i64>) -> Bytes {
    let mut trigger = Trigger::new(PACKAGE_NAME, &format!("loadgen/{PACKAGE_NAME}.std"));
    if let Some(due_us) = due_us {
        trigger = trigger.package_field("due_us", due_us);
    }
    trigger
        .robot(&robot_name(robot), &robot_address(prefix, robot))
        .schedule(serde_json::json!({"at": rfc3339_micros(at_us)}))
        .to_bytes()
}

/// One trigger to send: its body, and not before when.
pub struct Job {
    pub body: Bytes,
    pub not_before: Option<Instant>,
    /// The job's due moment, for the record of accepted triggers.
    pub due_us: Option<i64>,
}

/// Makes trigger number `seq`, or `None` when there are no more.
pub type JobMaker = Arc<dyn Fn(u64) -> Option<Job> + Send + Sync>;

/// A trigger that was accepted: when the client sent it and when the 201 came back
/// (microseconds since the epoch), and its due moment.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub sent_us: i64,
    pub answered_us: i64,
    pub due_us: Option<i64>,
}

/// What a pool of clients saw.
#[derive(Debug, Default)]
pub struct DriveResult {
    /// Answers by status (0: no answer).
    pub statuses: StatusCounts,
    /// Latency of each 201, in microseconds.
    pub latencies_us: Vec<i64>,
    /// Kept when asked for.
    pub accepted: Vec<Accepted>,
    /// A few answers other than 201, with their bodies, and connection errors.
    pub samples: BTreeMap<String, u64>,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    pub connections: u64,
}

impl DriveResult {
    pub fn created(&self) -> u64 {
        self.statuses.get(&201).copied().unwrap_or(0)
    }

    pub fn other_answers(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| **status != 201)
            .map(|(_, n)| n)
            .sum()
    }

    fn merge(&mut self, other: DriveResult) {
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.latencies_us.extend(other.latencies_us);
        self.accepted.extend(other.accepted);
        for (sample, n) in other.samples {
            if self.samples.len() < 20 || self.samples.contains_key(&sample) {
                *self.samples.entry(sample).or_default() += n;
            }
        }
        self.connections += other.connections;
    }
}

/// Sends triggers from `clients` concurrent keep-alive connections until `maker` has no more
/// or `deadline` passes.
pub async fn drive(
    instances: Vec<SocketAddr>,
    clients: usize,
    deadline: Option<Instant>,
    keep_accepted: bool,
    maker: JobMaker,
) -> DriveResult {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients.max(1) {
        let maker = Arc::clone(&maker);
        let counter = Arc::clone(&counter);
        // Clients are spread over the instances, round-robin.
        let addr = instances[client % instances.len()];
        tasks.push(tokio::spawn(async move {
            let mut client = http::client(addr);
            let mut result = DriveResult::default();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let seq = counter.fetch_add(1, Ordering::Relaxed);
                let Some(job) = maker(seq) else { break };
                if let Some(at) = job.not_before {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                }
                let sent_us = now_us();
                let sent = Instant::now();
                let answer = client.post_bytes("/api/jobs", job.body).await;
                let latency = sent.elapsed();
                match answer {
                    Ok(answer) if answer.status == 201 => {
                        *result.statuses.entry(201).or_default() += 1;
                        result.latencies_us.push(latency.as_micros() as i64);
                        if keep_accepted {
                            result.accepted.push(Accepted {
                                sent_us,
                                answered_us: now_us(),
                                due_us: job.due_us,
                            });
                        }
                    }
                    Ok(answer) => {
                        *result.statuses.entry(answer.status).or_default() += 1;
                        if result.samples.len() < 5 {
                            let text: String = answer.text().chars().take(300).collect();
                            *result
                                .samples
                                .entry(format!("{}: {text}", answer.status))
                                .or_default() += 1;
                        }
                    }
                    Err(error) => {
                        *result.statuses.entry(0).or_default() += 1;
                        let error = format!("{:#}", anyhow::Error::from(error));
                        *result.samples.entry(error).or_default() += 1;
                        // Do not spin on a server that is gone.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            result.connections = client.connections();
            result
        }));
    }
    let mut total = DriveResult::default();
    for task in tasks {
        if let Ok(result) = task.await {
            total.merge(result);
        }
    }
    total.elapsed = started.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_with_the_due_moment() {
        let body = job_body("AC", 5, 1_784_102_400_000_000, Some(42));
        assert_eq!(
            body,
            r#"{"Package":{"package_name":"loadgen-pkg","path":"loadgen/loadgen-pkg.std","due_us":42},"Robot":{"robot_name":"LOADGEN-5","robot_address":"AC0000000005"},"Schedule":{"at":"2026-07-15T08:00:00.000000Z"}}"#
        );
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["Package"]["package_name"], PACKAGE_NAME);
        assert_eq!(doc["Package"]["due_us"], 42);
        assert_eq!(doc["Robot"]["robot_address"], "AC0000000005");
        assert_eq!(doc["Robot"]["robot_name"], "LOADGEN-5");
        assert_eq!(doc["Schedule"]["at"], "2026-07-15T08:00:00.000000Z");
        let body = job_body("AC", 5, 0, None);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(doc["Package"].get("due_us").is_none());
    }
}
