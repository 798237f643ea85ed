//! PostgreSQL: a Pending job and its owed package file in one statement, if its robot is known.
//! A trigger is then one round trip to the server instead of three (robot lookup, job, file),
//! which is what bounds the writer there: it waits for each answer in turn. (Its creation event
//! goes with the batch's events, events.rs.) SQLite, in process, runs the same steps one by one
//! (`jobs::insert_row`).

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{OptionalExtension, PgConnection, QueryResult, RunQueryDsl};

use crate::time::to_micros;
use crate::{NewJob, StoreError};

/// Inserts `job` as Pending, due at its `run_at`: its id, or None if its robot is unknown.
pub(crate) fn insert_pending(
    conn: &mut PgConnection,
    job: &NewJob,
) -> Result<Option<i64>, StoreError> {
    let insert = InsertPending {
        job,
        run_at: to_micros(job.run_at),
        created_at: to_micros(job.created_at),
    };
    Ok(insert.get_result(conn).optional()?)
}

/// The statement of [`insert_pending`]. A type with a fixed text, so that diesel keeps it
/// prepared: parsing and planning it for every trigger would cost as much as running it. (Hence
/// also the status and delivery phase as literals: `'Pending'` and `0`, as `JobStatus` and
/// `Delivery` store them.)
struct InsertPending<'a> {
    job: &'a NewJob,
    run_at: i64,
    created_at: i64,
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
        out.push_bind_param::<Text, _>(job.robot_address.as_deref().unwrap_or_default())?;
        out.push_sql(
            "), job AS (INSERT INTO jobs (status, package, package_name, robot_address, \
             robot_name, run_at, schedule_id, attempts, created_at, updated_at, wake_at, \
             delivery, forced) SELECT 'Pending', ",
        );
        out.push_bind_param::<Text, _>(&job.package)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&job.package_name)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(job.robot_address.as_deref().unwrap_or_default())?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&job.robot_name)?;
        out.push_sql(", run, ");
        out.push_bind_param::<Nullable<BigInt>, _>(&job.schedule_id)?;
        out.push_sql(", 0, created, created, run, 0, FALSE FROM robot, (SELECT ");
        out.push_bind_param::<BigInt, _>(&self.run_at)?;
        out.push_sql("::BIGINT AS run, ");
        out.push_bind_param::<BigInt, _>(&self.created_at)?;
        // The creation event is not here: events are written with the batch (events.rs).
        out.push_sql(
            "::BIGINT AS created) AS times RETURNING id), \
             file AS (INSERT INTO pending_package_files (job_id) SELECT id FROM job) \
             SELECT id FROM job",
        );
        Ok(())
    }
}
