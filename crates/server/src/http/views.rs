//! How stored records look on the API. Store rows are not wire types: these are.

use chrono::{DateTime, SecondsFormat, Utc};
use rpa_store::{
    CredentialRecord, DeliveryRecord, EventRecord, JobEventRecord, JobRecord, RobotMessageRecord,
    RobotRecord, ScheduleEventRecord, ScheduleRecord, SubjectState, WebhookRecord,
};
use serde::Serialize;
use serde_json::value::RawValue;

/// How many next occurrences a schedule lists.
const UPCOMING: usize = 5;

pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Stored JSON goes out verbatim. It was serialized by this server, so it parses; the fallback
/// keeps a hand-edited row from breaking a whole listing.
fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned())
        .or_else(|_| RawValue::from_string(serde_json::Value::String(json.to_owned()).to_string()))
        .unwrap_or_else(|_| Box::<RawValue>::default())
}

#[derive(Serialize)]
pub(crate) struct RobotView {
    robot_address: String,
    robot_name: String,
    user_id: Option<Box<RawValue>>,
    online: bool,
    connection_id: Option<String>,
    protocol: i32,
    /// The server instance holding its live connection (several may share PostgreSQL).
    instance: Option<String>,
    /// These four are null for a robot recorded in advance until it registers.
    first_seen: Option<String>,
    last_seen: Option<String>,
    metadata: Option<Box<RawValue>>,
    /// The pools it belongs to (docs/POOLS.md).
    pools: Vec<String>,
}

impl RobotView {
    pub(crate) fn with_pools(self, pools: Vec<String>) -> RobotView {
        RobotView { pools, ..self }
    }
}

impl From<RobotRecord> for RobotView {
    fn from(robot: RobotRecord) -> Self {
        let registered = robot.registered();
        RobotView {
            robot_address: robot.address,
            robot_name: robot.name,
            user_id: robot.user_id.as_deref().filter(|_| registered).map(raw),
            online: robot.online,
            connection_id: robot.connection_id,
            protocol: robot.protocol,
            instance: robot.instance,
            first_seen: registered.then(|| time(robot.first_seen)),
            last_seen: registered.then(|| time(robot.last_seen)),
            metadata: registered.then(|| raw(&robot.metadata)),
            pools: Vec::new(),
        }
    }
}

/// A robot credential: never its token, which only the answer that created it holds.
#[derive(Serialize)]
pub(crate) struct CredentialView {
    id: i64,
    robot_address: String,
    description: String,
    created_at: String,
    last_used_at: Option<String>,
    /// Only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<CredentialRecord> for CredentialView {
    fn from(credential: CredentialRecord) -> Self {
        CredentialView {
            id: credential.id,
            robot_address: credential.robot_address,
            description: credential.description,
            created_at: time(credential.created_at),
            last_used_at: credential.last_used_at.map(time),
            token: None,
        }
    }
}

impl CredentialView {
    /// The answer to its creation, the one place its token is shown.
    pub(crate) fn created(credential: CredentialRecord, token: String) -> CredentialView {
        CredentialView {
            token: Some(token),
            ..CredentialView::from(credential)
        }
    }
}

#[derive(Serialize)]
pub(crate) struct MessageView {
    id: i64,
    robot_address: String,
    connection_id: String,
    received_at: String,
    value: Box<RawValue>,
}

impl From<RobotMessageRecord> for MessageView {
    fn from(message: RobotMessageRecord) -> Self {
        MessageView {
            id: message.id,
            robot_address: message.robot_address,
            connection_id: message.connection_id,
            received_at: time(message.received_at),
            value: raw(&message.value),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct JobView {
    id: i64,
    status: &'static str,
    package: Box<RawValue>,
    /// Null for a pool job until it is assigned.
    robot_address: Option<String>,
    robot_name: String,
    /// The pool it runs in; null for a job addressed to one robot.
    pool: Option<String>,
    run_at: String,
    schedule_id: Option<i64>,
    /// The job this one runs again (`POST /api/jobs/{id}/retry`), else null.
    retry_of: Option<i64>,
    attempts: i32,
    created_at: String,
    updated_at: String,
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<EventView>>,
}

impl From<JobRecord> for JobView {
    fn from(job: JobRecord) -> Self {
        JobView {
            id: job.id,
            status: job.status.as_str(),
            package: raw(&job.package),
            robot_address: job.robot_address,
            robot_name: job.robot_name,
            pool: job.pool,
            run_at: time(job.run_at),
            schedule_id: job.schedule_id,
            retry_of: job.retry_of,
            attempts: job.attempts,
            created_at: time(job.created_at),
            updated_at: time(job.updated_at),
            last_error: job.last_error,
            events: None,
        }
    }
}

impl JobView {
    pub(crate) fn with_events(job: JobRecord, events: Vec<JobEventRecord>) -> JobView {
        JobView {
            events: Some(events.into_iter().map(EventView::from).collect()),
            ..JobView::from(job)
        }
    }
}

/// A line of a job's history: one of its events (`id` and `type` as the event stream shows
/// them).
#[derive(Serialize)]
pub(crate) struct EventView {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    at: String,
    from: Option<&'static str>,
    to: &'static str,
    reason: String,
}

impl From<JobEventRecord> for EventView {
    fn from(event: JobEventRecord) -> Self {
        EventView {
            id: event.id.to_string(),
            kind: event.kind,
            at: time(event.at),
            from: event.from.map(|s| s.as_str()),
            to: event.to.as_str(),
            reason: event.reason,
        }
    }
}

/// An event as a CloudEvents 1.0 document in its JSON form (docs/EVENTS.md).
#[derive(Serialize)]
pub(crate) struct CloudEvent {
    specversion: &'static str,
    /// A decimal string, increasing in commit order.
    id: String,
    source: &'static str,
    #[serde(rename = "type")]
    kind: String,
    subject: String,
    time: String,
    datacontenttype: &'static str,
    data: EventData,
}

/// `data`: why, and the subject's state after the change.
#[derive(Serialize)]
struct EventData {
    reason: Option<String>,
    /// A job's sending number, on `job.sent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<JobView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    robot: Option<RobotView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<ScheduleView>,
    /// The credential created or revoked (never its token).
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<CredentialView>,
    /// Another subject's state, as stored (webhooks).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    other: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What every event says it comes from.
pub(crate) const EVENT_SOURCE: &str = "/socket-server";

impl From<EventRecord> for CloudEvent {
    fn from(event: EventRecord) -> Self {
        let mut data = EventData {
            reason: event.reason,
            attempt: None,
            job: None,
            robot: None,
            schedule: None,
            credential: None,
            other: None,
        };
        match event.state {
            SubjectState::Job(job) => {
                if event.kind == "job.sent" {
                    data.attempt = Some(job.attempts);
                }
                data.job = Some(JobView::from(*job));
            }
            SubjectState::Robot(robot) => data.robot = Some(RobotView::from(*robot)),
            SubjectState::RobotWithPools { robot, pools } => {
                data.robot = Some(RobotView::from(*robot).with_pools(pools));
            }
            SubjectState::Credential { robot, credential } => {
                data.robot = Some(RobotView::from(*robot));
                data.credential = Some(CredentialView::from(*credential));
            }
            SubjectState::Schedule(schedule) => {
                data.schedule = Some(ScheduleView::at(*schedule, event.at));
            }
            SubjectState::Other(Some(serde_json::Value::Object(fields))) => {
                data.other = Some(fields);
            }
            SubjectState::Other(_) => {}
        }
        CloudEvent {
            specversion: "1.0",
            id: event.id.to_string(),
            source: EVENT_SOURCE,
            kind: event.kind,
            subject: event.subject,
            time: event.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            datacontenttype: "application/json",
            data,
        }
    }
}

impl CloudEvent {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn kind(&self) -> &str {
        &self.kind
    }
}

/// A page of a listing: `next_after` is the key to pass as `after` for the next page.
#[derive(Serialize)]
pub(crate) struct Page<T, K> {
    pub(crate) items: Vec<T>,
    pub(crate) next_after: Option<K>,
}

#[derive(Serialize)]
pub(crate) struct ScheduleView {
    id: i64,
    cron: String,
    timezone: String,
    start: Option<String>,
    end: Option<String>,
    package: Box<RawValue>,
    /// Null for a pool's schedule.
    robot_address: Option<String>,
    robot_name: String,
    pool: Option<String>,
    active: bool,
    /// Paused by an operator: no instances until resumed.
    paused: bool,
    next_run_at: Option<String>,
    next_occurrences: Vec<String>,
    /// The same moments in the schedule's own zone, with its offset.
    next_occurrences_local: Vec<String>,
    last_run_at: Option<String>,
    ended_reason: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: Option<Vec<JobView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<ScheduleEventView>>,
}

impl ScheduleView {
    /// The schedule with its next occurrences after `now` (none once inactive). A paused
    /// schedule shows the ones it would have if resumed now.
    pub(crate) fn at(schedule: ScheduleRecord, now: DateTime<Utc>) -> ScheduleView {
        let cron = crate::tasks::recurring_jobs::cron_of(&schedule);
        let (upcoming, local) = match (schedule.active, cron) {
            (true, Ok(cron)) => {
                let upcoming = cron.upcoming(now, UPCOMING);
                let local = upcoming
                    .iter()
                    .map(|at| {
                        at.with_timezone(&cron.zone())
                            .to_rfc3339_opts(SecondsFormat::Millis, false)
                    })
                    .collect();
                (upcoming, local)
            }
            _ => (Vec::new(), Vec::new()),
        };
        ScheduleView::new(schedule, upcoming, local)
    }

    /// `upcoming`: the next occurrences, computed by the caller from the expression; `local`:
    /// the same in the schedule's zone.
    pub(crate) fn new(
        schedule: ScheduleRecord,
        upcoming: Vec<DateTime<Utc>>,
        local: Vec<String>,
    ) -> ScheduleView {
        ScheduleView {
            id: schedule.id,
            cron: schedule.cron,
            timezone: schedule.timezone,
            start: schedule.start.map(time),
            end: schedule.end.map(time),
            package: raw(&schedule.package),
            robot_address: schedule.robot_address,
            robot_name: schedule.robot_name,
            pool: schedule.pool,
            active: schedule.active,
            paused: schedule.paused,
            next_run_at: schedule.next_run_at.map(time),
            next_occurrences: upcoming.into_iter().map(time).collect(),
            next_occurrences_local: local,
            last_run_at: schedule.last_fire_at.map(time),
            ended_reason: schedule.ended_reason,
            created_at: time(schedule.created_at),
            instances: None,
            events: None,
        }
    }

    pub(crate) fn with_history(
        mut self,
        instances: Vec<JobRecord>,
        events: Vec<ScheduleEventRecord>,
    ) -> ScheduleView {
        self.instances = Some(instances.into_iter().map(JobView::from).collect());
        self.events = Some(events.into_iter().map(ScheduleEventView::from).collect());
        self
    }
}

#[derive(Serialize)]
pub(crate) struct ScheduleEventView {
    at: String,
    occurrence: Option<String>,
    kind: String,
    job_id: Option<i64>,
    reason: String,
}

impl From<ScheduleEventRecord> for ScheduleEventView {
    fn from(event: ScheduleEventRecord) -> Self {
        ScheduleEventView {
            at: time(event.at),
            occurrence: event.occurrence.map(time),
            kind: event.kind,
            job_id: event.job_id,
            reason: event.reason,
        }
    }
}

/// A webhook as the API shows it. The secret only in the answer to its creation.
#[derive(Serialize)]
pub(crate) struct WebhookView {
    id: i64,
    url: String,
    types: Vec<String>,
    description: String,
    format: &'static str,
    active: bool,
    created_at: String,
    disabled_at: Option<String>,
    disabled_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<WebhookRecord> for WebhookView {
    fn from(webhook: WebhookRecord) -> Self {
        WebhookView {
            id: webhook.id,
            url: webhook.url,
            types: webhook.types,
            description: webhook.description,
            format: webhook.format.as_str(),
            active: webhook.active,
            created_at: time(webhook.created_at),
            disabled_at: webhook.disabled_at.map(time),
            disabled_reason: webhook.disabled_reason,
            secret: None,
        }
    }
}

impl WebhookView {
    /// The answer to its creation, the one time the secret is shown.
    pub(crate) fn created(webhook: WebhookRecord, secret: String) -> WebhookView {
        WebhookView {
            secret: Some(secret),
            ..WebhookView::from(webhook)
        }
    }
}

/// An attempt of a webhook delivery, or an event it skipped.
#[derive(Serialize)]
pub(crate) struct DeliveryView {
    id: i64,
    /// As the event's `id` and the `webhook-id` header: a decimal string.
    event_id: String,
    /// 1 for the first attempt; 0 for a skipped event.
    attempt: i32,
    at: String,
    /// `delivered`, `failed` or `skipped`.
    outcome: &'static str,
    http_status: Option<u16>,
    /// Why there was no answer: `timeout`, `refused`, `dns`, `tls`, `address_not_allowed`,
    /// `connection`.
    error: Option<String>,
    duration_ms: Option<i64>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(delivery: DeliveryRecord) -> Self {
        DeliveryView {
            id: delivery.id,
            event_id: delivery.event_id.to_string(),
            attempt: delivery.attempt,
            at: time(delivery.at),
            outcome: delivery.outcome.as_str(),
            http_status: delivery.http_status,
            error: delivery.error,
            duration_ms: delivery.duration_ms,
        }
    }
}
