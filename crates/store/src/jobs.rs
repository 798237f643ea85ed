//! Jobs: creation, reading, and the records the API shows. The delivery state machine is in
//! `transitions.rs`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::connection::DbConnection;

use crate::events::{EventType, JobChange};
use crate::idempotency::{self, KeyCheck, Prior};
use crate::schema::{events, jobs, robots};
use crate::time::{Micros, OptionalMicros, from_micros, to_micros};
use crate::{Delivery, JobStatus, ReadConn, StoreError, WriteTx};

/// A job as stored: also the row, as the queries read it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = jobs, check_for_backend(crate::connection::MultiBackend))]
pub struct JobRecord {
    pub id: i64,
    pub status: JobStatus,
    /// The trigger's Package object as received (JSON).
    pub package: String,
    pub package_name: String,
    /// The robot it is for; `None` for a pool job not assigned yet.
    pub robot_address: Option<String>,
    pub robot_name: String,
    #[diesel(deserialize_as = Micros)]
    pub run_at: DateTime<Utc>,
    pub schedule_id: Option<i64>,
    /// Sendings so far, the first included.
    pub attempts: i32,
    #[diesel(deserialize_as = Micros)]
    pub created_at: DateTime<Utc>,
    #[diesel(deserialize_as = Micros)]
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// When the scheduler looks at the job next; `None` while it waits for an event.
    #[diesel(deserialize_as = OptionalMicros)]
    pub wake_at: Option<DateTime<Utc>>,
    pub delivery: Delivery,
    pub forced: bool,
    #[diesel(deserialize_as = OptionalMicros)]
    pub sent_at: Option<DateTime<Utc>>,
    /// The Failed or Cancelled job this one runs again (`POST /api/jobs/{id}/retry`).
    pub retry_of: Option<i64>,
    /// The pool it runs in (docs/POOLS.md); `None` for a job addressed to one robot.
    pub pool: Option<String>,
    /// Due and waiting for a free robot of its pool since then.
    #[diesel(deserialize_as = OptionalMicros)]
    pub pool_waiting_since: Option<DateTime<Utc>>,
}

/// One state change of a job, or an event within a state (a resend, an acknowledgement): the
/// job's own events, which are its history.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = events, check_for_backend(crate::connection::MultiBackend))]
pub struct JobEventRecord {
    pub id: i64,
    #[diesel(select_expression = events::job_id.assume_not_null())]
    pub job_id: i64,
    /// `job.created`, `job.sent`, ... (docs/EVENTS.md).
    pub kind: String,
    #[diesel(deserialize_as = Micros)]
    pub at: DateTime<Utc>,
    /// `None` for the creation event.
    #[diesel(column_name = from_status)]
    pub from: Option<JobStatus>,
    /// A job's events always carry its status and a reason.
    #[diesel(select_expression = events::to_status.assume_not_null())]
    pub to: JobStatus,
    #[diesel(select_expression = events::reason.assume_not_null())]
    pub reason: String,
}

/// A key that makes a retried trigger return what its first request created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    /// A digest of the request, so that the same key with a different body can be refused.
    pub request_hash: String,
}

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub package: String,
    pub package_name: String,
    /// Exactly one of `robot_address` and `pool` is set.
    pub robot_address: Option<String>,
    pub pool: Option<String>,
    pub robot_name: String,
    pub run_at: DateTime<Utc>,
    pub schedule_id: Option<i64>,
    /// The job this one runs again, for a retry.
    pub retry_of: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Why the job exists, for its first event.
    pub reason: String,
    pub idempotency: Option<IdempotencyKey>,
}

// One answer per trigger, moved once and never kept in bulk: boxing the record would cost an
// allocation per trigger for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertJob {
    Created(JobRecord),
    /// The idempotency key was used before with the same request: here is what it created.
    Replayed(Prior),
    /// The idempotency key was used before with a different request.
    KeyConflict,
    /// No robot with that address ever registered.
    UnknownRobot,
}

/// The result of running a job again.
// One answer per retry, moved once (as `InsertJob`).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryJob {
    /// The new job, Pending and due now.
    Created(JobRecord),
    /// The idempotency key was used before with the same request: here is what it created.
    Replayed(Prior),
    /// The idempotency key was used before with a different request.
    KeyConflict,
    NotFound,
    /// Only a Failed or Cancelled job can be run again; it is in this status.
    Conflict(JobStatus),
}

/// Which jobs a listing returns: newest first, keyset pages by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub robot_address: Option<String>,
    pub pool: Option<String>,
    pub schedule_id: Option<i64>,
    /// Only ids below this one (the last id of the previous page).
    pub before: Option<i64>,
    pub limit: i64,
}

/// A job the scheduler has to look at, in `wake_at` order.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = jobs, check_for_backend(crate::connection::MultiBackend))]
pub struct DueJob {
    pub id: i64,
    /// Only jobs with a `wake_at` are due.
    #[diesel(select_expression = jobs::wake_at.assume_not_null(), deserialize_as = Micros)]
    pub wake_at: DateTime<Utc>,
    pub robot_address: Option<String>,
}

/// Inserts a job row with its creation event: Pending and due at its `run_at`, or, given
/// `failed`, Failed at once with that reason (an occurrence of a schedule that was missed).
pub(crate) fn insert_row(
    tx: &mut WriteTx<'_>,
    job: &NewJob,
    failed: Option<&str>,
) -> Result<JobRecord, StoreError> {
    let created = to_micros(job.created_at);
    let run_at = to_micros(job.run_at);
    let (status, wake_at) = match failed {
        None => (JobStatus::Pending, Some(run_at)),
        Some(_) => (JobStatus::Failed, None),
    };
    let id: i64 = diesel::insert_into(jobs::table)
        .values((
            jobs::status.eq(status),
            jobs::package.eq(&job.package),
            jobs::package_name.eq(&job.package_name),
            jobs::robot_address.eq(&job.robot_address),
            jobs::robot_name.eq(&job.robot_name),
            jobs::run_at.eq(run_at),
            jobs::schedule_id.eq(job.schedule_id),
            jobs::retry_of.eq(job.retry_of),
            jobs::attempts.eq(0),
            jobs::created_at.eq(created),
            jobs::updated_at.eq(created),
            jobs::last_error.eq(failed),
            jobs::wake_at.eq(wake_at),
            jobs::delivery.eq(Delivery::Idle),
            jobs::forced.eq(false),
            jobs::pool.eq(&job.pool),
        ))
        .returning(jobs::id)
        .get_result(tx.conn)?;
    crate::package_files::owe(tx.conn, id)?;
    created_events(tx, job, id, failed);
    Ok(new_record(job, id, status, failed))
}

/// A new job's events: created, and failed at once for a missed occurrence.
fn created_events(tx: &mut WriteTx<'_>, job: &NewJob, id: i64, failed: Option<&str>) {
    let status = match failed {
        None => JobStatus::Pending,
        Some(_) => JobStatus::Failed,
    };
    let change = JobChange {
        id,
        from: None,
        to: status,
        attempts: 0,
        robot_address: job.robot_address.as_deref(),
        last_error: failed,
    };
    tx.job_event(EventType::JobCreated, change, job.created_at, &job.reason);
    if let Some(reason) = failed {
        let change = JobChange {
            from: Some(status),
            ..change
        };
        tx.job_event(EventType::JobFailed, change, job.created_at, reason);
    }
}

/// The record of a job just inserted by [`insert_row`], or deferred to the end of the batch on
/// PostgreSQL (deferred.rs).
fn new_record(job: &NewJob, id: i64, status: JobStatus, failed: Option<&str>) -> JobRecord {
    JobRecord {
        id,
        status,
        package: job.package.clone(),
        package_name: job.package_name.clone(),
        robot_address: job.robot_address.clone(),
        robot_name: job.robot_name.clone(),
        run_at: job.run_at,
        schedule_id: job.schedule_id,
        attempts: 0,
        created_at: job.created_at,
        updated_at: job.created_at,
        last_error: failed.map(str::to_owned),
        wake_at: failed.is_none().then_some(job.run_at),
        delivery: Delivery::Idle,
        forced: false,
        sent_at: None,
        retry_of: job.retry_of,
        pool: job.pool.clone(),
        pool_waiting_since: None,
    }
}

pub(crate) fn robot_exists(conn: &mut DbConnection, address: &str) -> Result<bool, StoreError> {
    Ok(robots::table
        .find(address)
        .select(robots::address)
        .first::<String>(conn)
        .optional()?
        .is_some())
}

pub(crate) fn load_job(conn: &mut DbConnection, id: i64) -> Result<Option<JobRecord>, StoreError> {
    Ok(jobs::table
        .find(id)
        .select(JobRecord::as_select())
        .first(conn)
        .optional()?)
}

impl WriteTx<'_> {
    /// Creates a Pending job, due at its `run_at`, with its creation event.
    pub fn insert_job(&mut self, job: &NewJob) -> Result<InsertJob, StoreError> {
        if let Some(key) = &job.idempotency {
            match idempotency::check(self.conn, key)? {
                KeyCheck::New => {}
                KeyCheck::Seen(prior) => return Ok(InsertJob::Replayed(prior)),
                KeyCheck::Conflict => return Ok(InsertJob::KeyConflict),
            }
        }
        let record = match &mut *self.conn {
            // A pool job has no robot to check; a pool no robot belongs to yet is accepted.
            _ if job.robot_address.is_none() => insert_row(self, job, None)?,
            // The foreign key tells an unknown robot, without a lookup of its own: the failed
            // statement changed nothing. (On PostgreSQL a failed statement aborts the whole
            // transaction, the batch's other writes with it: the insert checks the robot.)
            DbConnection::Sqlite(_) => match insert_row(self, job, None) {
                Err(StoreError::Database(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                    _,
                ))) => return Ok(InsertJob::UnknownRobot),
                other => other?,
            },
            // The row waits for the end of the batch, to be inserted with the batch's other
            // triggered jobs in one statement (deferred.rs).
            #[cfg(feature = "postgres")]
            // (Only jobs for one robot come here: a pool job took the arm above. Retries, the
            // one kind with `retry_of`, do not come through `insert_job`.)
            DbConnection::Pg(_) => {
                let address = job.robot_address.as_deref().unwrap_or_default();
                if !self.deferred.is_known(address) {
                    if !robot_exists(self.conn, address)? {
                        return Ok(InsertJob::UnknownRobot);
                    }
                    self.deferred.confirm(address);
                }
                let id = self.deferred_job_id()?;
                self.deferred.rows.push(crate::deferred::DeferredJob {
                    id,
                    package: job.package.clone(),
                    package_name: job.package_name.clone(),
                    robot_address: address.to_owned(),
                    robot_name: job.robot_name.clone(),
                    run_at: to_micros(job.run_at),
                    schedule_id: job.schedule_id,
                    created_at: to_micros(job.created_at),
                });
                created_events(self, job, id, None);
                new_record(job, id, JobStatus::Pending, None)
            }
        };
        if let Some(key) = &job.idempotency {
            idempotency::remember(self.conn, key, Some(record.id), None, job.created_at)?;
        }
        Ok(InsertJob::Created(record))
    }

    pub fn job(&mut self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        load_job(self.conn, id)
    }

    /// Runs the Failed or Cancelled job `id` again as a new job: same package, robot (or pool) and name,
    /// due at `now`, not an instance of its schedule (a retry is the operator's, not the
    /// schedule's), with `retry_of` naming the old one, which stays as it was. Its package file
    /// is owed like a trigger's. `idempotency` as on triggers, in the same key space.
    pub fn retry_job(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<RetryJob, StoreError> {
        if let Some(key) = idempotency {
            match idempotency::check(self.conn, key)? {
                KeyCheck::New => {}
                KeyCheck::Seen(prior) => return Ok(RetryJob::Replayed(prior)),
                KeyCheck::Conflict => return Ok(RetryJob::KeyConflict),
            }
        }
        // Failed and Cancelled are final: no other writer changes the old row, so it is read
        // without a lock.
        let Some(old) = load_job(self.conn, id)? else {
            return Ok(RetryJob::NotFound);
        };
        if !matches!(old.status, JobStatus::Failed | JobStatus::Cancelled) {
            return Ok(RetryJob::Conflict(old.status));
        }
        // A pool job runs again in its pool, on whichever robot is free then, not on the robot
        // it was assigned last time.
        let robot_address = if old.pool.is_some() {
            None
        } else {
            old.robot_address
        };
        let job = NewJob {
            package: old.package,
            package_name: old.package_name,
            robot_address,
            pool: old.pool,
            robot_name: old.robot_name,
            run_at: now,
            schedule_id: None,
            retry_of: Some(id),
            created_at: now,
            reason: format!("retry of job {id} (it was {})", old.status.as_str()),
            idempotency: None,
        };
        // The robot exists (the old job's foreign key says so): the plain insert serves both
        // backends.
        let record = insert_row(self, &job, None)?;
        if let Some(key) = idempotency {
            idempotency::remember(self.conn, key, Some(record.id), None, now)?;
        }
        Ok(RetryJob::Created(record))
    }

    /// PostgreSQL: the next of the ids drawn for the batch's deferred jobs, drawing them when
    /// none is left (deferred.rs).
    #[cfg(feature = "postgres")]
    fn deferred_job_id(&mut self) -> Result<i64, StoreError> {
        if let Some(id) = self.deferred.next_id() {
            return Ok(id);
        }
        let wanted = self.deferred.ids_wanted();
        let drawn = match &mut *self.conn {
            DbConnection::Pg(conn) => crate::pg_insert::draw_ids(conn, wanted)?,
            DbConnection::Sqlite(_) => Vec::new(),
        };
        self.deferred.add_ids(drawn);
        self.deferred
            .next_id()
            .ok_or_else(|| StoreError::Failed("no job id drawn".to_owned()))
    }
}

impl ReadConn<'_> {
    pub fn job(&mut self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        load_job(self.conn, id)
    }

    pub fn job_events(&mut self, job_id: i64) -> Result<Vec<JobEventRecord>, StoreError> {
        Ok(events::table
            .filter(events::job_id.eq(job_id))
            .order(events::id.asc())
            .select(JobEventRecord::as_select())
            .load(self.conn)?)
    }

    pub fn jobs(&mut self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let mut query = jobs::table.into_boxed();
        if let Some(status) = filter.status {
            query = query.filter(jobs::status.eq(status));
        }
        if let Some(robot) = &filter.robot_address {
            query = query.filter(jobs::robot_address.eq(robot));
        }
        if let Some(pool) = &filter.pool {
            query = query.filter(jobs::pool.eq(pool));
        }
        if let Some(schedule) = filter.schedule_id {
            query = query.filter(jobs::schedule_id.eq(schedule));
        }
        if let Some(before) = filter.before {
            query = query.filter(jobs::id.lt(before));
        }
        Ok(query
            .order(jobs::id.desc())
            .limit(filter.limit)
            .select(JobRecord::as_select())
            .load(self.conn)?)
    }

    /// Jobs whose `wake_at` is at or before `until`, earliest first, at most `limit`.
    pub fn due_jobs(
        &mut self,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueJob>, StoreError> {
        let due = jobs::table
            .filter(jobs::wake_at.is_not_null())
            .filter(jobs::wake_at.le(to_micros(until)))
            .order((jobs::wake_at.asc(), jobs::id.asc()))
            .select(DueJob::as_select())
            .limit(limit);
        Ok(if self.conn.shared() {
            // Several instances: the jobs of robots another instance holds are that instance's
            // to send. Those of robots nobody holds are everyone's (to park, or to fail as
            // missed); one instance gets each (see sending.rs).
            // A pool job not assigned yet has no robot: every instance may assign it.
            due.left_join(robots::table)
                .filter(
                    robots::instance_id
                        .is_null()
                        .or(robots::instance_id.eq(self.instance).assume_not_null()),
                )
                .load(self.conn)?
        } else {
            due.load(self.conn)?
        })
    }

    /// The earliest `wake_at` of all jobs, if any job is waiting for a time.
    pub fn next_wake(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<Option<i64>> = jobs::table
            .filter(jobs::wake_at.is_not_null())
            .order(jobs::wake_at.asc())
            .select(jobs::wake_at)
            .first(self.conn)
            .optional()?;
        Ok(next.flatten().map(from_micros))
    }

    /// How many jobs are in each status, for metrics.
    pub fn count_jobs_by_status(&mut self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
        Ok(jobs::table
            .group_by(jobs::status)
            .select((jobs::status, diesel::dsl::count_star()))
            .load(self.conn)?)
    }
}
