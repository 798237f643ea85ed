//! Recurring schedules and what happened to their occurrences. The store keeps them; when an
//! occurrence comes is the scheduler crate's business, so the server combines the two inside a
//! write.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::connection::DbConnection;

use crate::events::EventType;
use crate::idempotency::{self, KeyCheck, Prior};
use crate::jobs::{IdempotencyKey, NewJob, insert_row, robot_exists};
use crate::schema::{jobs, schedule_events, schedules};
use crate::time::{Micros, OptionalMicros, from_micros, to_micros};
use crate::{JobRecord, JobStatus, ReadConn, StoreError, WriteTx};

/// A recurring schedule as stored: also the row, as the queries read it.
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, Selectable, serde::Serialize, serde::Deserialize,
)]
#[diesel(table_name = schedules, check_for_backend(crate::connection::MultiBackend))]
pub struct ScheduleRecord {
    pub id: i64,
    pub cron: String,
    pub timezone: String,
    #[diesel(column_name = start_at, deserialize_as = OptionalMicros)]
    pub start: Option<DateTime<Utc>>,
    #[diesel(column_name = end_at, deserialize_as = OptionalMicros)]
    pub end: Option<DateTime<Utc>>,
    /// The trigger's Package object as received (JSON).
    pub package: String,
    pub package_name: String,
    /// `None` for a pool's schedule.
    pub robot_address: Option<String>,
    pub robot_name: String,
    /// False once deleted or past its last occurrence.
    pub active: bool,
    /// The next occurrence not yet handled.
    #[diesel(deserialize_as = OptionalMicros)]
    pub next_run_at: Option<DateTime<Utc>>,
    /// The last occurrence handled.
    #[diesel(deserialize_as = OptionalMicros)]
    pub last_fire_at: Option<DateTime<Utc>>,
    #[diesel(deserialize_as = Micros)]
    pub created_at: DateTime<Utc>,
    #[diesel(deserialize_as = Micros)]
    pub updated_at: DateTime<Utc>,
    pub ended_reason: Option<String>,
    /// Paused by an operator: no instances, and no `next_run_at`, until resumed. (Default
    /// false: event snapshots written before the column existed do not have it.)
    #[serde(default)]
    pub paused: bool,
    /// The pool its jobs run in (docs/POOLS.md).
    pub pool: Option<String>,
}

/// A schedule to create. `next_run_at` is its first occurrence, computed by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    pub cron: String,
    pub timezone: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub package: String,
    pub package_name: String,
    /// Exactly one of `robot_address` and `pool` is set.
    pub robot_address: Option<String>,
    pub pool: Option<String>,
    pub robot_name: String,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub idempotency: Option<IdempotencyKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertSchedule {
    Created(Box<ScheduleRecord>),
    Replayed(Prior),
    KeyConflict,
    UnknownRobot,
}

/// An entry of a schedule's history.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = schedule_events, check_for_backend(crate::connection::MultiBackend))]
pub struct ScheduleEventRecord {
    pub id: i64,
    pub schedule_id: i64,
    #[diesel(deserialize_as = OptionalMicros)]
    pub occurrence: Option<DateTime<Utc>>,
    #[diesel(deserialize_as = Micros)]
    pub at: DateTime<Utc>,
    /// `skipped`, `catch_up`, `missed`, `ended`, `deleted`, `paused`, `resumed`.
    pub kind: String,
    pub job_id: Option<i64>,
    pub reason: String,
}

/// Which schedules a listing returns: newest first, keyset pages by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleFilter {
    pub active: Option<bool>,
    pub robot_address: Option<String>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// The result of deleting a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// Stopped now; these pending instances were cancelled.
    Stopped(Box<ScheduleRecord>, Vec<i64>),
    /// It was already inactive: nothing changed.
    AlreadyStopped(Box<ScheduleRecord>),
    NotFound,
}

/// The result of pausing or resuming a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseOutcome {
    /// Paused or resumed now.
    Changed(Box<ScheduleRecord>),
    /// It already was: nothing changed (a 200 no-op).
    Unchanged(Box<ScheduleRecord>),
    /// Deleted or ended: it has nothing to pause or resume.
    Inactive(Box<ScheduleRecord>),
    NotFound,
}

pub(crate) fn load_schedule(
    conn: &mut DbConnection,
    id: i64,
) -> Result<Option<ScheduleRecord>, StoreError> {
    Ok(schedules::table
        .find(id)
        .select(ScheduleRecord::as_select())
        .first(conn)
        .optional()?)
}

impl WriteTx<'_> {
    pub fn insert_schedule(&mut self, new: &NewSchedule) -> Result<InsertSchedule, StoreError> {
        if let Some(key) = &new.idempotency {
            match idempotency::check(self.conn, key)? {
                KeyCheck::New => {}
                KeyCheck::Seen(prior) => return Ok(InsertSchedule::Replayed(prior)),
                KeyCheck::Conflict => return Ok(InsertSchedule::KeyConflict),
            }
        }
        if let Some(robot) = &new.robot_address
            && !robot_exists(self.conn, robot)?
        {
            return Ok(InsertSchedule::UnknownRobot);
        }
        let created = to_micros(new.created_at);
        let id: i64 = diesel::insert_into(schedules::table)
            .values((
                schedules::cron.eq(&new.cron),
                schedules::timezone.eq(&new.timezone),
                schedules::start_at.eq(new.start.map(to_micros)),
                schedules::end_at.eq(new.end.map(to_micros)),
                schedules::package.eq(&new.package),
                schedules::package_name.eq(&new.package_name),
                schedules::robot_address.eq(&new.robot_address),
                schedules::robot_name.eq(&new.robot_name),
                schedules::pool.eq(&new.pool),
                schedules::active.eq(new.next_run_at.is_some()),
                schedules::next_run_at.eq(new.next_run_at.map(to_micros)),
                schedules::created_at.eq(created),
                schedules::updated_at.eq(created),
            ))
            .returning(schedules::id)
            .get_result(self.conn)?;
        if let Some(key) = &new.idempotency {
            idempotency::remember(self.conn, key, None, Some(id), new.created_at)?;
        }
        let record =
            load_schedule(self.conn, id)?.ok_or_else(|| StoreError::vanished("schedule", id))?;
        self.subject_event(
            EventType::ScheduleCreated,
            format!("schedules/{id}"),
            new.created_at,
            Some("created by request"),
            &record,
        )?;
        Ok(InsertSchedule::Created(Box::new(record)))
    }

    pub fn schedule(&mut self, id: i64) -> Result<Option<ScheduleRecord>, StoreError> {
        load_schedule(self.conn, id)
    }

    /// The schedule, to fire its due occurrence. With several instances its row is locked for
    /// the rest of the transaction, and None if another instance is firing it right now (that
    /// one handles the occurrence; the next is in everyone's reads once it commits).
    pub fn schedule_to_fire(&mut self, id: i64) -> Result<Option<ScheduleRecord>, StoreError> {
        Ok(crate::connection::locked!(
            &mut *self.conn,
            schedules::table
                .find(id)
                .select(ScheduleRecord::as_select()),
            skip_locked,
            |q, c| q.first(c).optional()
        )?)
    }

    /// The schedule, its row locked for the rest of the transaction with several instances
    /// (waiting for an instance firing it right now), to pause or resume it.
    pub fn schedule_locked(&mut self, id: i64) -> Result<Option<ScheduleRecord>, StoreError> {
        Ok(crate::connection::locked!(
            &mut *self.conn,
            schedules::table
                .find(id)
                .select(ScheduleRecord::as_select()),
            |q, c| q.first(c).optional()
        )?)
    }

    /// Pauses the active schedule `id`: no next occurrence until it is resumed, so that the
    /// due query of every instance passes it by. Instances already created are untouched.
    /// Event: `schedule.paused`.
    pub fn pause_schedule(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<PauseOutcome, StoreError> {
        let Some(schedule) = self.schedule_locked(id)? else {
            return Ok(PauseOutcome::NotFound);
        };
        if !schedule.active {
            return Ok(PauseOutcome::Inactive(Box::new(schedule)));
        }
        if schedule.paused {
            return Ok(PauseOutcome::Unchanged(Box::new(schedule)));
        }
        diesel::update(schedules::table.find(id))
            .set((
                schedules::paused.eq(true),
                schedules::next_run_at.eq(None::<i64>),
                schedules::updated_at.eq(to_micros(now)),
            ))
            .execute(self.conn)?;
        self.record_schedule_event(id, None, now, "paused", None, "paused by request")?;
        let schedule =
            load_schedule(self.conn, id)?.ok_or_else(|| StoreError::vanished("schedule", id))?;
        Ok(PauseOutcome::Changed(Box::new(schedule)))
    }

    /// Resumes the paused schedule `id` at `next`, its first occurrence after now as the caller
    /// computed it from the expression: the paused time is not caught up. `None` (its end
    /// passed while it was paused) ends it. Event: `schedule.resumed` (and `schedule.ended`).
    pub fn resume_schedule(
        &mut self,
        schedule: &ScheduleRecord,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<PauseOutcome, StoreError> {
        let id = schedule.id;
        if !schedule.active {
            return Ok(PauseOutcome::Inactive(Box::new(schedule.clone())));
        }
        if !schedule.paused {
            return Ok(PauseOutcome::Unchanged(Box::new(schedule.clone())));
        }
        let ended = next.is_none().then_some("no further occurrence");
        diesel::update(schedules::table.find(id))
            .set((
                schedules::paused.eq(false),
                schedules::next_run_at.eq(next.map(to_micros)),
                schedules::active.eq(next.is_some()),
                schedules::ended_reason.eq(ended),
                schedules::updated_at.eq(to_micros(now)),
            ))
            .execute(self.conn)?;
        let reason = match next {
            Some(_) => "resumed by request; the occurrences while it was paused are not caught up",
            None => "resumed by request; its last occurrence passed while it was paused",
        };
        self.record_schedule_event(id, None, now, "resumed", None, reason)?;
        if let Some(ended) = ended {
            self.record_schedule_event(id, None, now, "ended", None, ended)?;
        }
        let schedule =
            load_schedule(self.conn, id)?.ok_or_else(|| StoreError::vanished("schedule", id))?;
        Ok(PauseOutcome::Changed(Box::new(schedule)))
    }

    /// A Pending instance of the schedule, if one is still waiting.
    pub fn pending_instance(&mut self, schedule_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(jobs::table
            .filter(jobs::schedule_id.eq(schedule_id))
            .filter(jobs::status.eq(JobStatus::Pending))
            .select(jobs::id)
            .first(self.conn)
            .optional()?)
    }

    /// Creates the job instance for one occurrence: Pending and due at `run_at`, or Failed at
    /// once with `failed` as the reason (a missed occurrence).
    pub fn create_instance(
        &mut self,
        schedule: &ScheduleRecord,
        run_at: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
        failed: Option<&str>,
    ) -> Result<JobRecord, StoreError> {
        let job = NewJob {
            package: schedule.package.clone(),
            package_name: schedule.package_name.clone(),
            robot_address: schedule.robot_address.clone(),
            pool: schedule.pool.clone(),
            robot_name: schedule.robot_name.clone(),
            run_at,
            schedule_id: Some(schedule.id),
            retry_of: None,
            created_at: now,
            reason: reason.to_owned(),
            idempotency: None,
        };
        insert_row(self, &job, failed)
    }

    /// Moves the schedule past the occurrence `fired` to `next` (`None`: it never fires again,
    /// for `ended`).
    pub fn advance_schedule(
        &mut self,
        id: i64,
        fired: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        ended: Option<&str>,
    ) -> Result<(), StoreError> {
        diesel::update(schedules::table.find(id))
            .set((
                schedules::last_fire_at.eq(Some(to_micros(fired))),
                schedules::next_run_at.eq(next.map(to_micros)),
                schedules::active.eq(next.is_some()),
                schedules::ended_reason.eq(ended),
                schedules::updated_at.eq(to_micros(now)),
            ))
            .execute(self.conn)?;
        Ok(())
    }

    /// Records a line of the schedule's history. The kinds the event catalogue names are events
    /// too, with the schedule's state as it is now: `skipped` and `missed` are
    /// `schedule.skipped`, `ended` is `schedule.ended`, `deleted` is `schedule.deleted`, `paused`
    /// and `resumed` are `schedule.paused` and `schedule.resumed` (record them after the change
    /// they describe).
    pub fn record_schedule_event(
        &mut self,
        schedule_id: i64,
        occurrence: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        kind: &str,
        job_id: Option<i64>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let event = match kind {
            "skipped" | "missed" => Some(EventType::ScheduleSkipped),
            "ended" => Some(EventType::ScheduleEnded),
            "deleted" => Some(EventType::ScheduleDeleted),
            "paused" => Some(EventType::SchedulePaused),
            "resumed" => Some(EventType::ScheduleResumed),
            _ => None,
        };
        if let Some(event) = event {
            let schedule = load_schedule(self.conn, schedule_id)?
                .ok_or_else(|| StoreError::vanished("schedule", schedule_id))?;
            let subject = format!("schedules/{schedule_id}");
            self.subject_event(event, subject, now, Some(reason), &schedule)?;
        }
        diesel::insert_into(schedule_events::table)
            .values((
                schedule_events::schedule_id.eq(schedule_id),
                schedule_events::occurrence.eq(occurrence.map(to_micros)),
                schedule_events::at.eq(to_micros(now)),
                schedule_events::kind.eq(kind),
                schedule_events::job_id.eq(job_id),
                schedule_events::reason.eq(reason),
            ))
            .execute(self.conn)?;
        Ok(())
    }

    /// Stops the schedule: no more occurrences, its pending instances cancelled. It stays
    /// readable, inactive.
    pub fn stop_schedule(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<StopOutcome, StoreError> {
        let Some(schedule) = load_schedule(self.conn, id)? else {
            return Ok(StopOutcome::NotFound);
        };
        if !schedule.active && schedule.ended_reason.as_deref() == Some("deleted") {
            return Ok(StopOutcome::AlreadyStopped(Box::new(schedule)));
        }
        let pending: Vec<i64> = jobs::table
            .filter(jobs::schedule_id.eq(id))
            .filter(jobs::status.eq(JobStatus::Pending))
            .select(jobs::id)
            .load(self.conn)?;
        for &job in &pending {
            let after: crate::transitions::After = diesel::update(jobs::table.find(job))
                .set((
                    jobs::status.eq(JobStatus::Cancelled),
                    jobs::wake_at.eq(None::<i64>),
                    jobs::updated_at.eq(to_micros(now)),
                ))
                .returning(crate::transitions::AFTER)
                .get_result(self.conn)?;
            self.changed_job(
                crate::EventType::JobCancelled,
                job,
                (JobStatus::Pending, JobStatus::Cancelled),
                &after,
                now,
                "its schedule was deleted",
            );
        }
        diesel::update(schedules::table.find(id))
            .set((
                schedules::active.eq(false),
                schedules::next_run_at.eq(None::<i64>),
                schedules::ended_reason.eq(Some("deleted")),
                schedules::updated_at.eq(to_micros(now)),
            ))
            .execute(self.conn)?;
        self.record_schedule_event(
            id,
            None,
            now,
            "deleted",
            None,
            &format!(
                "deleted by request; {} pending instances cancelled",
                pending.len()
            ),
        )?;
        let schedule =
            load_schedule(self.conn, id)?.ok_or_else(|| StoreError::vanished("schedule", id))?;
        Ok(StopOutcome::Stopped(Box::new(schedule), pending))
    }
}

impl ReadConn<'_> {
    pub fn schedule(&mut self, id: i64) -> Result<Option<ScheduleRecord>, StoreError> {
        load_schedule(self.conn, id)
    }

    pub fn schedules(
        &mut self,
        filter: &ScheduleFilter,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let mut query = schedules::table.into_boxed();
        if let Some(active) = filter.active {
            query = query.filter(schedules::active.eq(active));
        }
        if let Some(robot) = &filter.robot_address {
            query = query.filter(schedules::robot_address.eq(robot));
        }
        if let Some(before) = filter.before {
            query = query.filter(schedules::id.lt(before));
        }
        Ok(query
            .order(schedules::id.desc())
            .limit(filter.limit)
            .select(ScheduleRecord::as_select())
            .load(self.conn)?)
    }

    /// Schedules whose next occurrence is at or before `until`, earliest first.
    pub fn due_schedules(
        &mut self,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(i64, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(i64, Option<i64>)> = schedules::table
            .filter(schedules::next_run_at.is_not_null())
            .filter(schedules::next_run_at.le(to_micros(until)))
            .order((schedules::next_run_at.asc(), schedules::id.asc()))
            .select((schedules::id, schedules::next_run_at))
            .limit(limit)
            .load(self.conn)?;
        Ok(rows
            .into_iter()
            .map(|(id, at)| (id, from_micros(at.unwrap_or_default())))
            .collect())
    }

    /// The schedule's history, newest first.
    pub fn schedule_events(
        &mut self,
        schedule_id: i64,
        limit: i64,
    ) -> Result<Vec<ScheduleEventRecord>, StoreError> {
        Ok(schedule_events::table
            .filter(schedule_events::schedule_id.eq(schedule_id))
            .order(schedule_events::id.desc())
            .limit(limit)
            .select(ScheduleEventRecord::as_select())
            .load(self.conn)?)
    }
}
