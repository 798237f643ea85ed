//! Events: every change the catalogue of docs/EVENTS.md names, written in the transaction of the
//! change (an outbox), and read back in the order the changes committed.
//!
//! One row per change. A job's event is also its history entry (`job_events`), so a trigger
//! writes one event row, not a history row and an outbox row. It records the job's changing
//! state after the change (status, attempts, robot, last error); the rest of a job never
//! changes and is read from its row. Any other subject's state after the change is a JSON
//! snapshot of its record, in this crate's own format.
//!
//! Operations do not insert events themselves: they hand them to the batch ([`WriteTx::emit`]),
//! and the writer inserts all of a batch's events just before its commit, with statements kept
//! prepared: up to 256 rows per statement on SQLite, one statement per batch on PostgreSQL
//! ([`flush`], `events/insert.rs`). An operation that fails takes its events with it.
//!
//! Ids increase in commit order, which is what lets a consumer resume after the last id it saw
//! without missing anything. On SQLite the one writer commits in id order. On PostgreSQL several
//! instances commit concurrently and an identity column alone would not do (a transaction that
//! drew a smaller id can commit after one that drew a larger id, and a consumer in between would
//! skip it for good), so [`flush`] first takes a transaction-level advisory lock that every
//! event-writing transaction takes, and only then draws its ids (both in the one statement that
//! inserts the batch's events); the lock is released by the commit. Id order is then lock order is commit order. What it costs: the last statements and
//! the commit of batches from different instances happen one after the other.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connection::DbConnection;
use crate::credentials::{CredentialRecord, CredentialSnapshot};
use crate::schema::{event_stream, events, jobs};
use crate::time::{Micros, to_micros};
use crate::{JobRecord, JobStatus, ReadConn, RobotRecord, ScheduleRecord, StoreError, WriteTx};

mod insert;

/// Job ids per read of the jobs that events are about.
const CHUNK: usize = 500;

/// The lock that orders event ids on PostgreSQL ("rpa_evnt").
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
const EVENTS_LOCK: i64 = 0x7270_615f_6576_6e74;

/// The channel on which PostgreSQL instances announce committed events.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) const EVENTS_CHANNEL: &str = "rpa_events";

/// The types of the catalogue (docs/EVENTS.md), and the history-only job types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    JobCreated,
    JobSent,
    JobAcknowledged,
    JobSucceeded,
    JobFailed,
    JobCancelled,
    JobForced,
    JobWaiting,
    JobRequeued,
    JobOverdue,
    RobotRegistered,
    RobotOnline,
    RobotOffline,
    RobotUnreachable,
    RobotUpdated,
    RobotCredentialCreated,
    RobotCredentialRevoked,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleSkipped,
    ScheduleEnded,
    SchedulePaused,
    ScheduleResumed,
    WebhookDisabled,
}

impl EventType {
    pub const ALL: [EventType; 24] = [
        EventType::JobCreated,
        EventType::JobSent,
        EventType::JobAcknowledged,
        EventType::JobSucceeded,
        EventType::JobFailed,
        EventType::JobCancelled,
        EventType::JobForced,
        EventType::JobWaiting,
        EventType::JobRequeued,
        EventType::JobOverdue,
        EventType::RobotRegistered,
        EventType::RobotOnline,
        EventType::RobotOffline,
        EventType::RobotUnreachable,
        EventType::RobotUpdated,
        EventType::RobotCredentialCreated,
        EventType::RobotCredentialRevoked,
        EventType::ScheduleCreated,
        EventType::ScheduleDeleted,
        EventType::ScheduleSkipped,
        EventType::ScheduleEnded,
        EventType::SchedulePaused,
        EventType::ScheduleResumed,
        EventType::WebhookDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::JobCreated => "job.created",
            EventType::JobSent => "job.sent",
            EventType::JobAcknowledged => "job.acknowledged",
            EventType::JobSucceeded => "job.succeeded",
            EventType::JobFailed => "job.failed",
            EventType::JobCancelled => "job.cancelled",
            EventType::JobForced => "job.forced",
            EventType::JobWaiting => "job.waiting",
            EventType::JobRequeued => "job.requeued",
            EventType::JobOverdue => "job.overdue",
            EventType::RobotRegistered => "robot.registered",
            EventType::RobotOnline => "robot.online",
            EventType::RobotOffline => "robot.offline",
            EventType::RobotUnreachable => "robot.unreachable",
            EventType::RobotUpdated => "robot.updated",
            EventType::RobotCredentialCreated => "robot.credential_created",
            EventType::RobotCredentialRevoked => "robot.credential_revoked",
            EventType::ScheduleCreated => "schedule.created",
            EventType::ScheduleDeleted => "schedule.deleted",
            EventType::ScheduleSkipped => "schedule.skipped",
            EventType::ScheduleEnded => "schedule.ended",
            EventType::SchedulePaused => "schedule.paused",
            EventType::ScheduleResumed => "schedule.resumed",
            EventType::WebhookDisabled => "webhook.disabled",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// A job's state after a change, as its event records it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobChange<'a> {
    pub(crate) id: i64,
    /// `None` for the creation event.
    pub(crate) from: Option<JobStatus>,
    pub(crate) to: JobStatus,
    pub(crate) attempts: i32,
    /// `None` while a pool job has no robot.
    pub(crate) robot_address: Option<&'a str>,
    pub(crate) last_error: Option<&'a str>,
}

/// An event waiting in the batch for its insert: its row, column by column (the job's columns
/// are `None` for an event about another subject).
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    kind: EventType,
    subject: String,
    at: i64,
    reason: Option<String>,
    job_id: Option<i64>,
    from_status: Option<JobStatus>,
    to_status: Option<JobStatus>,
    attempts: Option<i32>,
    robot_address: Option<String>,
    last_error: Option<String>,
    data: Option<String>,
}

impl WriteTx<'_> {
    /// Records a job's change; its event is written with the batch, or not at all if this
    /// operation fails.
    pub(crate) fn job_event(
        &mut self,
        kind: EventType,
        change: JobChange<'_>,
        at: DateTime<Utc>,
        reason: &str,
    ) {
        self.events.push(NewEvent {
            kind,
            subject: format!("jobs/{}", change.id),
            at: to_micros(at),
            reason: Some(reason.to_owned()),
            job_id: Some(change.id),
            from_status: change.from,
            to_status: Some(change.to),
            attempts: Some(change.attempts),
            robot_address: change.robot_address.map(str::to_owned),
            last_error: change.last_error.map(str::to_owned),
            data: None,
        });
    }

    /// Records a change of another subject, with a snapshot of its state after the change.
    pub(crate) fn subject_event<T: Serialize>(
        &mut self,
        kind: EventType,
        subject: String,
        at: DateTime<Utc>,
        reason: Option<&str>,
        state: &T,
    ) -> Result<(), StoreError> {
        let data = serde_json::to_string(state).map_err(StoreError::snapshot)?;
        self.events.push(NewEvent {
            kind,
            subject,
            at: to_micros(at),
            reason: reason.map(str::to_owned),
            job_id: None,
            from_status: None,
            to_status: None,
            attempts: None,
            robot_address: None,
            last_error: None,
            data: Some(data),
        });
        Ok(())
    }

    /// How many events this batch holds so far: an operation that fails truncates back to it.
    pub(crate) fn event_mark(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn forget_events_after(&mut self, mark: usize) {
        self.events.truncate(mark);
    }
}

/// Inserts the batch's events (and empties the buffer); the highest id inserted, if any. Runs
/// inside the batch's transaction, last before its commit.
pub(crate) fn flush(
    conn: &mut DbConnection,
    buffer: &mut Vec<NewEvent>,
) -> Result<Option<i64>, StoreError> {
    if buffer.is_empty() {
        return Ok(None);
    }
    let last = match conn {
        DbConnection::Sqlite(conn) => {
            insert::sqlite(conn, buffer)?;
            // Cheap: the end of the table's b-tree.
            let last: Option<i64> = events::table
                .select(diesel::dsl::max(events::id))
                .first(conn)?;
            last
        }
        // The lock, the rows and the announcement in one round trip (insert.rs).
        #[cfg(feature = "postgres")]
        DbConnection::Pg(conn) => Some(insert::pg(conn, buffer, EVENTS_LOCK, EVENTS_CHANNEL)?),
    };
    buffer.clear();
    Ok(last)
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Increases in commit order.
    pub id: i64,
    /// `job.created`, `robot.online`, ...: a text, since a database written by a newer version
    /// may hold types this one does not know.
    pub kind: String,
    /// `jobs/42`, `robots/001AFFDB45C2`, `schedules/3`, `webhooks/2`.
    pub subject: String,
    pub at: DateTime<Utc>,
    /// Why, for a person.
    pub reason: Option<String>,
    /// The subject's state after the change.
    pub state: SubjectState,
}

/// The state an event's subject was left in.
#[derive(Debug, Clone, PartialEq)]
pub enum SubjectState {
    Job(Box<JobRecord>),
    Robot(Box<RobotRecord>),
    /// A robot whose pools an operator set (`robot.updated`): the robot with its pools.
    RobotWithPools {
        robot: Box<RobotRecord>,
        pools: Vec<String>,
    },
    /// A robot's credential was created or revoked: the robot, and the credential (never its
    /// token).
    Credential {
        robot: Box<RobotRecord>,
        credential: Box<CredentialRecord>,
    },
    Schedule(Box<ScheduleRecord>),
    /// Another kind of subject: its snapshot as JSON (webhooks, and kinds of a newer version).
    Other(Option<serde_json::Value>),
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = events, check_for_backend(crate::connection::MultiBackend))]
struct EventRow {
    id: i64,
    kind: String,
    subject: String,
    #[diesel(deserialize_as = Micros)]
    at: DateTime<Utc>,
    reason: Option<String>,
    job_id: Option<i64>,
    to_status: Option<JobStatus>,
    attempts: Option<i32>,
    robot_address: Option<String>,
    last_error: Option<String>,
    data: Option<String>,
}

/// A type filter: `job.failed`, or `job.*` for every type of a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypePattern {
    Exact(String),
    /// The part before the `*`, e.g. `job.`.
    Prefix(String),
}

impl TypePattern {
    /// Reads `job.failed` or `job.*`.
    pub fn parse(text: &str) -> TypePattern {
        match text.strip_suffix('*') {
            Some(prefix) => TypePattern::Prefix(prefix.to_owned()),
            None => TypePattern::Exact(text.to_owned()),
        }
    }

    pub fn matches(&self, kind: &str) -> bool {
        match self {
            TypePattern::Exact(exact) => exact == kind,
            TypePattern::Prefix(prefix) => kind.starts_with(prefix.as_str()),
        }
    }
}

/// Which events a read returns: oldest first, after `after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub after: i64,
    /// Any of these types; all when empty.
    pub types: Vec<TypePattern>,
    /// Any of these subjects; all when empty.
    pub subjects: Vec<String>,
    pub limit: i64,
}

type EventCondition = Box<
    dyn BoxableExpression<
            events::table,
            crate::connection::MultiBackend,
            SqlType = diesel::sql_types::Bool,
        >,
>;

impl ReadConn<'_> {
    /// Events after `filter.after` (and after the stream's floor), oldest first.
    pub fn events(&mut self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let floor = self.event_floor()?;
        let mut query = events::table
            .filter(events::id.gt(filter.after.max(floor)))
            .into_boxed();
        if let Some(types) = type_condition(&filter.types) {
            query = query.filter(types);
        }
        if let Some(subjects) = subject_condition(&filter.subjects) {
            query = query.filter(subjects);
        }
        let rows: Vec<EventRow> = query
            .order(events::id.asc())
            .limit(filter.limit)
            .select(EventRow::as_select())
            .load(self.conn)?;
        records(self.conn, rows)
    }

    /// The highest id retention trimmed from the stream: a consumer resuming below it has
    /// missed events for good.
    pub fn event_floor(&mut self) -> Result<i64, StoreError> {
        Ok(event_stream::table
            .select(event_stream::floor)
            .first::<i64>(self.conn)
            .optional()?
            .unwrap_or(0))
    }

    /// The highest event id committed, 0 before the first.
    pub fn last_event_id(&mut self) -> Result<i64, StoreError> {
        let last: Option<i64> = events::table
            .select(diesel::dsl::max(events::id))
            .first(self.conn)?;
        Ok(last.unwrap_or(0))
    }
}

fn type_condition(types: &[TypePattern]) -> Option<EventCondition> {
    types
        .iter()
        .map(|pattern| -> EventCondition {
            match pattern {
                TypePattern::Exact(kind) => Box::new(events::kind.eq(kind.clone())),
                // A range, not LIKE: exact for any character, and able to use an index.
                TypePattern::Prefix(prefix) => match prefix_end(prefix) {
                    Some(end) => {
                        Box::new(events::kind.ge(prefix.clone()).and(events::kind.lt(end)))
                    }
                    None => Box::new(events::kind.ge(prefix.clone())),
                },
            }
        })
        .reduce(|all, one| Box::new(all.or(one)))
}

fn subject_condition(subjects: &[String]) -> Option<EventCondition> {
    subjects
        .iter()
        .map(|subject| -> EventCondition {
            // A job's events are found through its id (events_by_job); the others through the
            // index of the few events that are not about a job.
            match subject
                .strip_prefix("jobs/")
                .and_then(|id| id.parse::<i64>().ok())
            {
                Some(id) => Box::new(events::job_id.assume_not_null().eq(id)),
                None => Box::new(
                    events::subject
                        .eq(subject.clone())
                        .and(events::job_id.is_null()),
                ),
            }
        })
        .reduce(|all, one| Box::new(all.or(one)))
}

/// The smallest text above every text that starts with `prefix`: `job.` → `job/`.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The records of `rows`: a job's event gets the job's row with the event's state laid over it.
fn records(conn: &mut DbConnection, rows: Vec<EventRow>) -> Result<Vec<EventRecord>, StoreError> {
    let mut job_ids: Vec<i64> = rows.iter().filter_map(|row| row.job_id).collect();
    job_ids.sort_unstable();
    job_ids.dedup();
    let mut jobs = std::collections::HashMap::with_capacity(job_ids.len());
    for chunk in job_ids.chunks(CHUNK) {
        let loaded: Vec<JobRecord> = jobs::table
            .filter(jobs::id.eq_any(chunk))
            .select(JobRecord::as_select())
            .load(conn)?;
        jobs.extend(loaded.into_iter().map(|job| (job.id, job)));
    }
    rows.into_iter()
        .map(|row| {
            let state = match row.job_id {
                Some(id) => match jobs.get(&id) {
                    Some(job) => SubjectState::Job(Box::new(JobRecord {
                        status: row.to_status.unwrap_or(job.status),
                        attempts: row.attempts.unwrap_or(job.attempts),
                        // A pool job's event before its assignment names no robot.
                        robot_address: row.robot_address.clone(),
                        last_error: row.last_error.clone(),
                        updated_at: row.at,
                        ..job.clone()
                    })),
                    // Deleted with its job a moment ago: the row went with it.
                    None => SubjectState::Other(None),
                },
                None => snapshot(&row.kind, &row.subject, row.data.as_deref())?,
            };
            Ok(EventRecord {
                id: row.id,
                kind: row.kind,
                subject: row.subject,
                at: row.at,
                reason: row.reason,
                state,
            })
        })
        .collect()
}

fn snapshot(kind: &str, subject: &str, data: Option<&str>) -> Result<SubjectState, StoreError> {
    fn parse<T: DeserializeOwned>(data: Option<&str>) -> Result<Option<T>, StoreError> {
        data.map(|text| serde_json::from_str(text).map_err(StoreError::snapshot))
            .transpose()
    }
    if kind == EventType::RobotUpdated.as_str() {
        #[derive(serde::Deserialize)]
        struct Snapshot {
            #[serde(flatten)]
            robot: RobotRecord,
            #[serde(default)]
            pools: Vec<String>,
        }
        return Ok(match parse::<Snapshot>(data)? {
            Some(snapshot) => SubjectState::RobotWithPools {
                robot: Box::new(snapshot.robot),
                pools: snapshot.pools,
            },
            None => SubjectState::Other(None),
        });
    }
    if kind.starts_with("robot.credential_") {
        return Ok(match parse::<CredentialSnapshot>(data)? {
            Some(snapshot) => SubjectState::Credential {
                robot: Box::new(snapshot.robot),
                credential: Box::new(snapshot.credential),
            },
            None => SubjectState::Other(None),
        });
    }
    Ok(match subject.split_once('/').map(|(kind, _)| kind) {
        Some("robots") => match parse::<RobotRecord>(data)? {
            Some(robot) => SubjectState::Robot(Box::new(robot)),
            None => SubjectState::Other(None),
        },
        Some("schedules") => match parse::<ScheduleRecord>(data)? {
            Some(schedule) => SubjectState::Schedule(Box::new(schedule)),
            None => SubjectState::Other(None),
        },
        _ => SubjectState::Other(parse(data)?),
    })
}

impl WriteTx<'_> {
    /// Trims the stream up to events older than `horizon`, at most `batch` of them: the ones
    /// about no job are deleted, a job's stay with it as its history. Returns true when more
    /// may be left.
    pub fn trim_events(&mut self, horizon: DateTime<Utc>, batch: i64) -> Result<bool, StoreError> {
        let floor: i64 = event_stream::table
            .select(event_stream::floor)
            .first(self.conn)?;
        let next: Vec<(i64, i64)> = events::table
            .filter(events::id.gt(floor))
            .order(events::id.asc())
            .select((events::id, events::at))
            .limit(batch)
            .load(self.conn)?;
        let horizon = to_micros(horizon);
        // Times increase with ids (give or take clocks of several instances): the stream is
        // trimmed up to the first event that is young enough.
        let old = next.iter().take_while(|(_, at)| *at < horizon).count();
        let Some(&(new_floor, _)) = next[..old].last() else {
            return Ok(false);
        };
        diesel::delete(
            events::table
                .filter(events::id.gt(floor))
                .filter(events::id.le(new_floor))
                .filter(events::job_id.is_null()),
        )
        .execute(self.conn)?;
        self.raise_event_floor(new_floor)?;
        Ok(old == next.len() && i64::try_from(old).unwrap_or(i64::MAX) >= batch)
    }

    /// Events up to `id` are gone from the stream (a purge of jobs deleted theirs).
    pub(crate) fn raise_event_floor(&mut self, id: i64) -> Result<(), StoreError> {
        diesel::update(event_stream::table.filter(event_stream::floor.lt(id)))
            .set(event_stream::floor.eq(id))
            .execute(self.conn)?;
        Ok(())
    }
}
