//! The checker: accounts for every trigger that got a 2xx.
//!
//! The harness writes a [`Ledger`] while a fault runs: every trigger it sent (and what it got
//! back), every package a robot received, and every fault it injected. At the end it reads the
//! server's jobs ([`ServerJob`]) and [`Ledger::check`] sorts each accepted trigger into exactly
//! one [`Fate`]: delivered, pending (not yet due, or its robot offline), cancelled or failed with
//! a reason, or one of the failures: lost (no such job), overdue (due, robot online, not sent),
//! sent but never received, failed without a reason. Across deliveries it finds packages that
//! arrived before their due moment (early), duplicates that no fault explains, and deliveries of
//! jobs nobody triggered.
//!
//! Every trigger carries a unique key in its package (`fault_key`) and its due moment
//! (`due_us`): the server delivers extra package keys verbatim, so a delivery names the trigger
//! it belongs to even when the trigger's answer never arrived (the server was killed while
//! answering).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::{Value, json};

/// The package keys the harness adds to every trigger.
pub const KEY_FIELD: &str = "fault_key";
pub const DUE_FIELD: &str = "due_us";

/// What a trigger request got.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Answer {
    /// A 2xx with the job id.
    Accepted { status: u16, job_id: i64 },
    /// Any other status. `problem`: the body was a problem document; `retry_after`: the
    /// header was present.
    Refused {
        status: u16,
        code: Option<String>,
        problem: bool,
        retry_after: bool,
    },
    /// No answer: connection refused or reset, timeout.
    NoAnswer { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    pub key: String,
    /// The robot's address; empty for a pool trigger.
    pub robot: String,
    pub due_us: i64,
    pub sent_us: i64,
    pub answered_us: i64,
    pub answer: Answer,
}

impl Trigger {
    pub fn job_id(&self) -> Option<i64> {
        match self.answer {
            Answer::Accepted { job_id, .. } => Some(job_id),
            _ => None,
        }
    }
}

/// A package a robot received.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub job_id: i64,
    pub key: Option<String>,
    pub robot: String,
    /// When the robot had it, on the server's timeline (the harness's clock plus any offset the
    /// server's clock was given).
    pub received_us: i64,
    pub due_us: Option<i64>,
}

impl Delivery {
    /// A delivery as a robot saw it: the job id and the package the server sent.
    pub fn from_package(
        robot: &str,
        job_id: i64,
        package: &serde_json::Map<String, Value>,
        received_us: i64,
    ) -> Delivery {
        Delivery {
            job_id,
            key: package
                .get(KEY_FIELD)
                .and_then(Value::as_str)
                .map(str::to_owned),
            robot: robot.to_owned(),
            received_us,
            due_us: package.get(DUE_FIELD).and_then(Value::as_i64),
        }
    }
}

/// A fault the harness injected, from the moment it struck to the moment the server was back
/// (the same moment for a fault that does not stop the server).
#[derive(Debug, Clone, Serialize)]
pub struct FaultMark {
    pub label: String,
    pub start_us: i64,
    pub end_us: i64,
}

/// A job as the server shows it at the end.
#[derive(Debug, Clone, Serialize)]
pub struct ServerJob {
    pub id: i64,
    pub status: String,
    /// The robot's address; empty for a pool job not assigned to a robot (again) yet.
    pub robot: String,
    pub pool: Option<String>,
    pub key: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub run_at_us: Option<i64>,
    pub schedule_id: Option<i64>,
}

impl ServerJob {
    /// From a job of `GET /api/jobs` or `GET /api/jobs/{id}`.
    pub fn from_view(view: &Value) -> Option<ServerJob> {
        Some(ServerJob {
            id: view.get("id")?.as_i64()?,
            status: view.get("status")?.as_str()?.to_owned(),
            robot: match view.get("robot_address")? {
                Value::Null => String::new(),
                address => address.as_str()?.to_owned(),
            },
            pool: view.get("pool").and_then(Value::as_str).map(str::to_owned),
            key: view
                .get("package")
                .and_then(|p| p.get(KEY_FIELD))
                .and_then(Value::as_str)
                .map(str::to_owned),
            attempts: view.get("attempts").and_then(Value::as_i64).unwrap_or(0),
            last_error: view
                .get("last_error")
                .and_then(Value::as_str)
                .map(str::to_owned),
            run_at_us: view
                .get("run_at")
                .and_then(Value::as_str)
                .and_then(crate::clock::parse_us),
            schedule_id: view.get("schedule_id").and_then(Value::as_i64),
        })
    }
}

/// Everything one fault run recorded.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub triggers: Vec<Trigger>,
    pub deliveries: Vec<Delivery>,
    pub faults: Vec<FaultMark>,
}

/// What the checker needs besides the ledger.
#[derive(Debug, Clone)]
pub struct Context {
    /// The server's jobs at the end, by id.
    pub jobs: HashMap<i64, ServerJob>,
    /// Robots online at the end.
    pub online: HashSet<String>,
    /// The end, on the server's timeline.
    pub now_us: i64,
    /// A delivery counts as in flight at a fault when it arrived at most this long before the
    /// fault struck (its confirmation, acknowledgement or report may not have been committed).
    pub in_flight_window_us: i64,
    /// A pending job due less than this long ago is still "not yet due" (the server fires it
    /// within milliseconds; the snapshot of its state and the clock are not taken together).
    pub due_grace_us: i64,
}

/// Where one accepted trigger ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    Delivered,
    PendingNotDue,
    PendingRobotOffline,
    Cancelled,
    FailedWithReason,
    // The failures:
    Lost,
    Overdue,
    SentNotReceived,
    FailedWithoutReason,
}

impl Fate {
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Fate::Lost | Fate::Overdue | Fate::SentNotReceived | Fate::FailedWithoutReason
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Early {
    pub job_id: i64,
    pub due_us: i64,
    pub received_us: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    pub job_id: i64,
    pub robot: String,
    pub deliveries: usize,
    /// The fault that explains each extra delivery, or `None` for one that nothing explains.
    pub explained_by: Vec<Option<String>>,
}

impl Duplicate {
    pub fn is_explained(&self) -> bool {
        self.explained_by.iter().all(Option::is_some)
    }
}

/// The checker's findings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub attempted: usize,
    pub accepted: usize,
    pub refused_by_status: BTreeMap<u16, usize>,
    pub no_answer: usize,
    pub fates: BTreeMap<Fate, usize>,
    /// Accepted triggers in a failing fate, by fate: (job id, key).
    pub failures: BTreeMap<Fate, Vec<(i64, String)>>,
    pub early: Vec<Early>,
    pub duplicates: Vec<Duplicate>,
    /// Triggers answered with an error whose job exists all the same: half-stored.
    pub refused_but_stored: Vec<String>,
    /// Triggers without an answer whose job exists (committed before the fault: allowed).
    pub unanswered_but_stored: usize,
    /// Deliveries that match no job the harness knows of.
    pub phantom_deliveries: Vec<i64>,
    pub deliveries: usize,
}

impl Verdict {
    pub fn lost(&self) -> usize {
        self.count(Fate::Lost)
    }

    pub fn count(&self, fate: Fate) -> usize {
        self.fates.get(&fate).copied().unwrap_or(0)
    }

    pub fn failing_fates(&self) -> usize {
        self.failures.values().map(Vec::len).sum()
    }

    pub fn unexplained_duplicates(&self) -> usize {
        self.duplicates.iter().filter(|d| !d.is_explained()).count()
    }

    pub fn explained_duplicates(&self) -> usize {
        self.duplicates.iter().filter(|d| d.is_explained()).count()
    }

    /// The rules every fault shares: nothing lost or otherwise unaccounted for, nothing early,
    /// no duplicate without a fault to explain it, nothing refused yet stored, nothing delivered
    /// that was never triggered.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (fate, items) in &self.failures {
            if !items.is_empty() {
                let sample: Vec<String> = items
                    .iter()
                    .take(5)
                    .map(|(id, key)| format!("job {id} ({key})"))
                    .collect();
                problems.push(format!(
                    "{} accepted triggers {:?}: {}",
                    items.len(),
                    fate,
                    sample.join(", ")
                ));
            }
        }
        if !self.early.is_empty() {
            let sample: Vec<String> = self
                .early
                .iter()
                .take(5)
                .map(|e| {
                    format!(
                        "job {} {:.3} s early",
                        e.job_id,
                        (e.due_us - e.received_us) as f64 / 1e6
                    )
                })
                .collect();
            problems.push(format!(
                "{} deliveries before their due moment: {}",
                self.early.len(),
                sample.join(", ")
            ));
        }
        let unexplained: Vec<String> = self
            .duplicates
            .iter()
            .filter(|d| !d.is_explained())
            .take(5)
            .map(|d| format!("job {} x{}", d.job_id, d.deliveries))
            .collect();
        if !unexplained.is_empty() {
            problems.push(format!(
                "{} jobs delivered more than once with no fault in flight: {}",
                self.unexplained_duplicates(),
                unexplained.join(", ")
            ));
        }
        if !self.refused_but_stored.is_empty() {
            problems.push(format!(
                "{} triggers answered with an error were stored anyway: {:?}",
                self.refused_but_stored.len(),
                self.refused_but_stored.iter().take(5).collect::<Vec<_>>()
            ));
        }
        if !self.phantom_deliveries.is_empty() {
            problems.push(format!(
                "{} deliveries of jobs nobody triggered: {:?}",
                self.phantom_deliveries.len(),
                self.phantom_deliveries.iter().take(5).collect::<Vec<_>>()
            ));
        }
        problems
    }

    pub fn figures(&self) -> Value {
        json!({
            "triggers_attempted": self.attempted,
            "triggers_accepted": self.accepted,
            "triggers_refused_by_status": self.refused_by_status,
            "triggers_without_answer": self.no_answer,
            "unanswered_but_stored": self.unanswered_but_stored,
            "fates": self.fates,
            "lost": self.lost(),
            "early": self.early.len(),
            "duplicates_explained": self.explained_duplicates(),
            "duplicates_unexplained": self.unexplained_duplicates(),
            "refused_but_stored": self.refused_but_stored.len(),
            "phantom_deliveries": self.phantom_deliveries.len(),
            "deliveries": self.deliveries,
        })
    }
}

impl Ledger {
    pub fn check(&self, context: &Context) -> Verdict {
        let mut verdict = Verdict {
            attempted: self.triggers.len(),
            deliveries: self.deliveries.len(),
            ..Verdict::default()
        };
        let jobs_by_key: HashMap<&str, &ServerJob> = context
            .jobs
            .values()
            .filter_map(|job| job.key.as_deref().map(|key| (key, job)))
            .collect();
        let mut by_job: HashMap<i64, Vec<&Delivery>> = HashMap::new();
        for delivery in &self.deliveries {
            by_job.entry(delivery.job_id).or_default().push(delivery);
        }

        let mut known_jobs: HashSet<i64> = HashSet::new();
        for trigger in &self.triggers {
            match &trigger.answer {
                Answer::Accepted { job_id, .. } => {
                    verdict.accepted += 1;
                    known_jobs.insert(*job_id);
                    let fate = fate(trigger, *job_id, context, by_job.contains_key(job_id));
                    *verdict.fates.entry(fate).or_default() += 1;
                    if fate.is_failure() {
                        verdict
                            .failures
                            .entry(fate)
                            .or_default()
                            .push((*job_id, trigger.key.clone()));
                    }
                }
                Answer::Refused { status, .. } => {
                    *verdict.refused_by_status.entry(*status).or_default() += 1;
                    if let Some(job) = jobs_by_key.get(trigger.key.as_str()) {
                        known_jobs.insert(job.id);
                        verdict.refused_but_stored.push(trigger.key.clone());
                    }
                }
                Answer::NoAnswer { .. } => {
                    verdict.no_answer += 1;
                    if let Some(job) = jobs_by_key.get(trigger.key.as_str()) {
                        known_jobs.insert(job.id);
                        verdict.unanswered_but_stored += 1;
                    }
                }
            }
        }

        let due_of: HashMap<i64, i64> = self
            .triggers
            .iter()
            .filter_map(|t| t.job_id().map(|id| (id, t.due_us)))
            .collect();
        for delivery in &self.deliveries {
            if !known_jobs.contains(&delivery.job_id) {
                verdict.phantom_deliveries.push(delivery.job_id);
            }
            let due = delivery
                .due_us
                .or_else(|| due_of.get(&delivery.job_id).copied());
            if let Some(due_us) = due
                && delivery.received_us < due_us
            {
                verdict.early.push(Early {
                    job_id: delivery.job_id,
                    due_us,
                    received_us: delivery.received_us,
                });
            }
        }

        let mut ids: Vec<&i64> = by_job.keys().collect();
        ids.sort();
        for id in ids {
            let mut deliveries = by_job[id].clone();
            if deliveries.len() < 2 {
                continue;
            }
            deliveries.sort_by_key(|d| d.received_us);
            let explained_by = deliveries
                .windows(2)
                .map(|pair| self.explain(pair[0], pair[1], context.in_flight_window_us))
                .collect();
            verdict.duplicates.push(Duplicate {
                job_id: *id,
                robot: deliveries[0].robot.clone(),
                deliveries: deliveries.len(),
                explained_by,
            });
        }
        verdict
    }

    /// The fault that explains a second delivery: the first arrived shortly before the fault
    /// struck (or while the server was down, from a write just before), the second after.
    fn explain(&self, first: &Delivery, second: &Delivery, window_us: i64) -> Option<String> {
        self.faults
            .iter()
            .find(|fault| {
                first.received_us <= fault.end_us
                    && second.received_us >= fault.start_us
                    && fault.start_us - first.received_us <= window_us
            })
            .map(|fault| fault.label.clone())
    }
}

fn fate(trigger: &Trigger, job_id: i64, context: &Context, received: bool) -> Fate {
    let Some(job) = context.jobs.get(&job_id) else {
        return Fate::Lost;
    };
    if job.key.as_deref() != Some(trigger.key.as_str()) {
        // Another job under this id: the accepted one is gone.
        return Fate::Lost;
    }
    match job.status.as_str() {
        "Executed" | "Succeeded" if received => Fate::Delivered,
        "Executed" | "Succeeded" => Fate::SentNotReceived,
        "Pending" if received => Fate::Delivered,
        "Pending" if trigger.due_us > context.now_us - context.due_grace_us => Fate::PendingNotDue,
        // A pool job waits for any robot of its pool, not for one.
        "Pending" if job.pool.is_none() && !context.online.contains(&job.robot) => {
            Fate::PendingRobotOffline
        }
        "Pending" => Fate::Overdue,
        "Cancelled" => Fate::Cancelled,
        "Failed"
            if job
                .last_error
                .as_deref()
                .is_some_and(|e| !e.trim().is_empty()) =>
        {
            Fate::FailedWithReason
        }
        _ => Fate::FailedWithoutReason,
    }
}

#[cfg(test)]
mod tests;
