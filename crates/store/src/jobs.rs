//! Jobs: creation, reading, and the records the API shows. The delivery state machine is in
//! `transitions.rs`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::connection::DbConnection;

use crate::idempotency::{self, KeyCheck, Prior};
use crate::schema::{job_events, jobs, package_file_progress, pending_package_files, robots};
use crate::time::{from_micros, to_micros};
use crate::{ReadConn, StoreError, WriteTx};

/// The statuses of http-api.md, spelt as the API shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobStatus {
    Pending,
    Executed,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Executed,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "Pending",
            JobStatus::Executed => "Executed",
            JobStatus::Succeeded => "Succeeded",
            JobStatus::Failed => "Failed",
            JobStatus::Cancelled => "Cancelled",
        }
    }

    /// Accepts any capitalisation: the original frontend compared statuses case-insensitively.
    pub fn parse(text: &str) -> Option<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// Succeeded, Failed and Cancelled never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    pub(crate) fn from_stored(text: &str) -> Result<JobStatus, StoreError> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown job status {text:?}")))
    }
}

/// Where a job's current sending stands. Internal to delivery; the API shows only the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Not being sent.
    Idle,
    /// Claimed for sending; not yet known to be written to the robot's socket.
    Claimed,
    /// Written to an extended robot, which has not acknowledged it yet.
    AwaitingAck,
    /// Written (and acknowledged, for an extended robot).
    Written,
}

impl Delivery {
    pub(crate) fn code(self) -> i32 {
        match self {
            Delivery::Idle => 0,
            Delivery::Claimed => 1,
            Delivery::AwaitingAck => 2,
            Delivery::Written => 3,
        }
    }

    pub(crate) fn from_code(code: i32) -> Result<Delivery, StoreError> {
        match code {
            0 => Ok(Delivery::Idle),
            1 => Ok(Delivery::Claimed),
            2 => Ok(Delivery::AwaitingAck),
            3 => Ok(Delivery::Written),
            other => Err(StoreError::Corrupt(format!(
                "unknown delivery phase {other}"
            ))),
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: i64,
    pub status: JobStatus,
    /// The trigger's Package object as received (JSON).
    pub package: String,
    pub package_name: String,
    pub robot_address: String,
    pub robot_name: String,
    pub run_at: DateTime<Utc>,
    pub schedule_id: Option<i64>,
    /// Sendings so far, the first included.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// When the scheduler looks at the job next; `None` while it waits for an event.
    pub wake_at: Option<DateTime<Utc>>,
    pub delivery: Delivery,
    pub forced: bool,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Queryable)]
pub(crate) struct JobRow {
    id: i64,
    status: String,
    package: String,
    package_name: String,
    robot_address: String,
    robot_name: String,
    run_at: i64,
    schedule_id: Option<i64>,
    attempts: i32,
    created_at: i64,
    updated_at: i64,
    last_error: Option<String>,
    wake_at: Option<i64>,
    delivery: i32,
    forced: bool,
    sent_at: Option<i64>,
}

impl JobRow {
    pub(crate) fn into_record(self) -> Result<JobRecord, StoreError> {
        Ok(JobRecord {
            id: self.id,
            status: JobStatus::from_stored(&self.status)?,
            package: self.package,
            package_name: self.package_name,
            robot_address: self.robot_address,
            robot_name: self.robot_name,
            run_at: from_micros(self.run_at),
            schedule_id: self.schedule_id,
            attempts: self.attempts,
            created_at: from_micros(self.created_at),
            updated_at: from_micros(self.updated_at),
            last_error: self.last_error,
            wake_at: self.wake_at.map(from_micros),
            delivery: Delivery::from_code(self.delivery)?,
            forced: self.forced,
            sent_at: self.sent_at.map(from_micros),
        })
    }
}

/// One state change of a job, or an event within a state (a resend, an acknowledgement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEventRecord {
    pub id: i64,
    pub job_id: i64,
    pub at: DateTime<Utc>,
    /// `None` for the creation event.
    pub from: Option<JobStatus>,
    pub to: JobStatus,
    pub reason: String,
}

#[derive(Queryable)]
struct JobEventRow {
    id: i64,
    job_id: i64,
    at: i64,
    from_status: Option<String>,
    to_status: String,
    reason: String,
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
    pub robot_address: String,
    pub robot_name: String,
    pub run_at: DateTime<Utc>,
    pub schedule_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Why the job exists, for its first event.
    pub reason: String,
    pub idempotency: Option<IdempotencyKey>,
}

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

/// Which jobs a listing returns: newest first, keyset pages by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub robot_address: Option<String>,
    pub schedule_id: Option<i64>,
    /// Only ids below this one (the last id of the previous page).
    pub before: Option<i64>,
    pub limit: i64,
}

/// A job the scheduler has to look at, in `wake_at` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueJob {
    pub id: i64,
    pub wake_at: DateTime<Utc>,
    pub robot_address: String,
}

pub(crate) fn record_event(
    conn: &mut DbConnection,
    job_id: i64,
    at: DateTime<Utc>,
    from: Option<JobStatus>,
    to: JobStatus,
    reason: &str,
) -> Result<(), StoreError> {
    diesel::insert_into(job_events::table)
        .values((
            job_events::job_id.eq(job_id),
            job_events::at.eq(to_micros(at)),
            job_events::from_status.eq(from.map(JobStatus::as_str)),
            job_events::to_status.eq(to.as_str()),
            job_events::reason.eq(reason),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records many events at one moment, a few hundred rows per statement.
pub(crate) fn record_events(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    events: &[(i64, Option<JobStatus>, JobStatus, String)],
) -> Result<(), StoreError> {
    let at = to_micros(at);
    for chunk in events.chunks(500) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(job_id, from, to, reason)| {
                (
                    job_events::job_id.eq(*job_id),
                    job_events::at.eq(at),
                    job_events::from_status.eq(from.map(JobStatus::as_str)),
                    job_events::to_status.eq(to.as_str()),
                    job_events::reason.eq(reason.as_str()),
                )
            })
            .collect();
        let insert = diesel::insert_into(job_events::table).values(rows);
        crate::connection::per_backend!(&mut *conn, |c| insert.execute(c))?;
    }
    Ok(())
}

/// Inserts a job row with its creation event: Pending and due at its `run_at`, or, given
/// `failed`, Failed at once with that reason (an occurrence of a schedule that was missed).
pub(crate) fn insert_row(
    conn: &mut DbConnection,
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
            jobs::status.eq(status.as_str()),
            jobs::package.eq(&job.package),
            jobs::package_name.eq(&job.package_name),
            jobs::robot_address.eq(&job.robot_address),
            jobs::robot_name.eq(&job.robot_name),
            jobs::run_at.eq(run_at),
            jobs::schedule_id.eq(job.schedule_id),
            jobs::attempts.eq(0),
            jobs::created_at.eq(created),
            jobs::updated_at.eq(created),
            jobs::last_error.eq(failed),
            jobs::wake_at.eq(wake_at),
            jobs::delivery.eq(Delivery::Idle.code()),
            jobs::forced.eq(false),
        ))
        .returning(jobs::id)
        .get_result(conn)?;
    if conn.shared() {
        // Several instances commit out of id order: the file is owed by row, not by watermark.
        diesel::insert_into(pending_package_files::table)
            .values(pending_package_files::job_id.eq(id))
            .execute(conn)?;
    }
    record_event(conn, id, job.created_at, None, status, &job.reason)?;
    if let Some(reason) = failed {
        record_event(conn, id, job.created_at, Some(status), status, reason)?;
    }
    Ok(new_record(job, id, status, failed))
}

/// The record of a job just inserted by [`insert_row`] or [`insert_pending_pg`].
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
    }
}

/// PostgreSQL: a Pending job, its owed package file and its creation event in one statement,
/// if its robot is known (None otherwise). A trigger is then one round trip to the server
/// instead of four (robot lookup, job, file, event), which is what bounds the writer there: it
/// waits for each answer in turn.
#[cfg(feature = "postgres")]
fn insert_pending_pg(
    conn: &mut diesel::PgConnection,
    job: &NewJob,
) -> Result<Option<i64>, StoreError> {
    let insert = pg::InsertPending {
        job,
        run_at: to_micros(job.run_at),
        created_at: to_micros(job.created_at),
    };
    Ok(insert.get_result(conn).optional()?)
}

#[cfg(feature = "postgres")]
mod pg {
    use diesel::pg::Pg;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel::sql_types::{BigInt, Nullable, Text};
    use diesel::{PgConnection, QueryResult, RunQueryDsl};

    use super::NewJob;

    /// The statement of [`super::insert_pending_pg`]. A type with a fixed text, so that diesel
    /// keeps it prepared: parsing and planning it for every trigger would cost as much as
    /// running it.
    pub(super) struct InsertPending<'a> {
        pub(super) job: &'a NewJob,
        pub(super) run_at: i64,
        pub(super) created_at: i64,
    }

    impl QueryId for InsertPending<'_> {
        type QueryId = InsertPending<'static>;
        const HAS_STATIC_QUERY_ID: bool = true;
    }

    impl Query for InsertPending<'_> {
        type SqlType = BigInt;
    }

    impl RunQueryDsl<PgConnection> for InsertPending<'_> {}

    impl QueryFragment<Pg> for InsertPending<'_> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
            let job = self.job;
            out.push_sql("WITH robot AS (SELECT 1 FROM robots WHERE address = ");
            out.push_bind_param::<Text, _>(&job.robot_address)?;
            out.push_sql(
                "), job AS (INSERT INTO jobs (status, package, package_name, robot_address, \
                 robot_name, run_at, schedule_id, attempts, created_at, updated_at, wake_at, \
                 delivery, forced) SELECT 'Pending', ",
            );
            out.push_bind_param::<Text, _>(&job.package)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&job.package_name)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&job.robot_address)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&job.robot_name)?;
            out.push_sql(", run, ");
            out.push_bind_param::<Nullable<BigInt>, _>(&job.schedule_id)?;
            out.push_sql(", 0, created, created, run, 0, FALSE FROM robot, (SELECT ");
            out.push_bind_param::<BigInt, _>(&self.run_at)?;
            out.push_sql("::BIGINT AS run, ");
            out.push_bind_param::<BigInt, _>(&self.created_at)?;
            out.push_sql(
                "::BIGINT AS created) AS times RETURNING id, created_at), \
                 file AS (INSERT INTO pending_package_files (job_id) SELECT id FROM job), \
                 event AS (INSERT INTO job_events (job_id, at, from_status, to_status, reason) \
                 SELECT id, created_at, NULL, 'Pending', ",
            );
            out.push_bind_param::<Text, _>(&job.reason)?;
            out.push_sql(" FROM job) SELECT id FROM job");
            Ok(())
        }
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
    jobs::table
        .find(id)
        .first::<JobRow>(conn)
        .optional()?
        .map(JobRow::into_record)
        .transpose()
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
            // The foreign key tells an unknown robot, without a lookup of its own: the failed
            // statement changed nothing. (On PostgreSQL a failed statement aborts the whole
            // transaction, the batch's other writes with it: the insert checks the robot.)
            DbConnection::Sqlite(_) => match insert_row(self.conn, job, None) {
                Err(StoreError::Database(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                    _,
                ))) => return Ok(InsertJob::UnknownRobot),
                other => other?,
            },
            #[cfg(feature = "postgres")]
            DbConnection::Pg(conn) => match insert_pending_pg(conn, job)? {
                Some(id) => new_record(job, id, JobStatus::Pending, None),
                None => return Ok(InsertJob::UnknownRobot),
            },
        };
        if let Some(key) = &job.idempotency {
            idempotency::remember(self.conn, key, Some(record.id), None, job.created_at)?;
        }
        Ok(InsertJob::Created(record))
    }

    pub fn job(&mut self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        load_job(self.conn, id)
    }
}

impl ReadConn<'_> {
    pub fn job(&mut self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        load_job(self.conn, id)
    }

    pub fn job_events(&mut self, job_id: i64) -> Result<Vec<JobEventRecord>, StoreError> {
        job_events::table
            .filter(job_events::job_id.eq(job_id))
            .order(job_events::id.asc())
            .load::<JobEventRow>(self.conn)?
            .into_iter()
            .map(|row| {
                Ok(JobEventRecord {
                    id: row.id,
                    job_id: row.job_id,
                    at: from_micros(row.at),
                    from: row
                        .from_status
                        .as_deref()
                        .map(JobStatus::from_stored)
                        .transpose()?,
                    to: JobStatus::from_stored(&row.to_status)?,
                    reason: row.reason,
                })
            })
            .collect()
    }

    pub fn jobs(&mut self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let mut query = jobs::table.into_boxed();
        if let Some(status) = filter.status {
            query = query.filter(jobs::status.eq(status.as_str()));
        }
        if let Some(robot) = &filter.robot_address {
            query = query.filter(jobs::robot_address.eq(robot));
        }
        if let Some(schedule) = filter.schedule_id {
            query = query.filter(jobs::schedule_id.eq(schedule));
        }
        if let Some(before) = filter.before {
            query = query.filter(jobs::id.lt(before));
        }
        query
            .order(jobs::id.desc())
            .limit(filter.limit)
            .load::<JobRow>(self.conn)?
            .into_iter()
            .map(JobRow::into_record)
            .collect()
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
            .select((jobs::id, jobs::wake_at, jobs::robot_address))
            .limit(limit);
        let rows: Vec<(i64, Option<i64>, String)> = if self.conn.shared() {
            // Several instances: the jobs of robots another instance holds are that instance's
            // to send. Those of robots nobody holds are everyone's (to park, or to fail as
            // missed); one instance gets each (see sending.rs).
            due.inner_join(robots::table)
                .filter(
                    robots::instance_id
                        .is_null()
                        .or(robots::instance_id.eq(self.instance)),
                )
                .load(self.conn)?
        } else {
            due.load(self.conn)?
        };
        Ok(rows
            .into_iter()
            .map(|(id, wake_at, robot_address)| DueJob {
                id,
                wake_at: from_micros(wake_at.unwrap_or_default()),
                robot_address,
            })
            .collect())
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
        let rows: Vec<(String, i64)> = jobs::table
            .group_by(jobs::status)
            .select((jobs::status, diesel::dsl::count_star()))
            .load(self.conn)?;
        rows.into_iter()
            .map(|(status, count)| Ok((JobStatus::from_stored(&status)?, count)))
            .collect()
    }
}

/// A job whose package file is still to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    pub job_id: i64,
    pub package_name: String,
    /// The Package object as received (JSON).
    pub package: String,
}

impl ReadConn<'_> {
    /// Jobs whose package file is not written yet, oldest first.
    pub fn unwritten_package_files(&mut self, limit: i64) -> Result<Vec<PackageFile>, StoreError> {
        let columns = (jobs::id, jobs::package_name, jobs::package);
        let rows: Vec<(i64, String, String)> = if self.conn.shared() {
            pending_package_files::table
                .inner_join(jobs::table.on(jobs::id.eq(pending_package_files::job_id)))
                .order(pending_package_files::job_id.asc())
                .select(columns)
                .limit(limit)
                .load(self.conn)?
        } else {
            let written_up_to: i64 = package_file_progress::table
                .select(package_file_progress::written_up_to)
                .first(self.conn)?;
            jobs::table
                .filter(jobs::id.gt(written_up_to))
                .order(jobs::id.asc())
                .select(columns)
                .limit(limit)
                .load(self.conn)?
        };
        Ok(rows
            .into_iter()
            .map(|(job_id, package_name, package)| PackageFile {
                job_id,
                package_name,
                package,
            })
            .collect())
    }
}

impl WriteTx<'_> {
    /// Records that these jobs, the first ones [`ReadConn::unwritten_package_files`] gave in
    /// its order, have their package files.
    pub fn mark_package_files_written(&mut self, job_ids: &[i64]) -> Result<(), StoreError> {
        if self.conn.shared() {
            for chunk in job_ids.chunks(500) {
                diesel::delete(
                    pending_package_files::table
                        .filter(pending_package_files::job_id.eq_any(chunk)),
                )
                .execute(self.conn)?;
            }
            return Ok(());
        }
        // One instance commits jobs in id order, so every job up to the last one has its file.
        let Some(&job_id) = job_ids.iter().max() else {
            return Ok(());
        };
        diesel::update(
            package_file_progress::table.filter(package_file_progress::written_up_to.lt(job_id)),
        )
        .set(package_file_progress::written_up_to.eq(job_id))
        .execute(self.conn)?;
        Ok(())
    }
}
