//! PostgreSQL: the statements of the batch's deferred jobs (deferred.rs): its job ids drawn in
//! one round trip, and its Pending jobs with their owed package files inserted in one statement
//! of one array per column, instead of one round trip per trigger (robot lookup, job, file).
//! Each a type with a fixed text, so that diesel keeps it prepared. SQLite, in process, inserts
//! each job at once (`jobs::insert_row`).

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

use crate::StoreError;

/// Draws `count` job ids from the jobs' sequence, in one round trip (deferred.rs).
pub(crate) fn draw_ids(conn: &mut PgConnection, count: usize) -> Result<Vec<i64>, StoreError> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    Ok(DrawIds { count }.load(conn)?)
}

/// Inserts the batch's deferred jobs, Pending and each owed its package file, in one statement
/// (deferred.rs), and empties the list.
pub(crate) fn flush(
    conn: &mut PgConnection,
    rows: &mut Vec<crate::deferred::DeferredJob>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let statement = InsertDeferred {
        ids: rows.iter().map(|job| job.id).collect(),
        packages: rows.iter().map(|job| job.package.as_str()).collect(),
        package_names: rows.iter().map(|job| job.package_name.as_str()).collect(),
        robot_addresses: rows.iter().map(|job| job.robot_address.as_str()).collect(),
        robot_names: rows.iter().map(|job| job.robot_name.as_str()).collect(),
        run_ats: rows.iter().map(|job| job.run_at).collect(),
        schedule_ids: rows.iter().map(|job| job.schedule_id).collect(),
        created_ats: rows.iter().map(|job| job.created_at).collect(),
    };
    let inserted = statement.execute(conn)?;
    if inserted != rows.len() {
        // Cannot happen (a missing robot fails the statement on its foreign key); were it to,
        // the batch must not be acknowledged.
        return Err(StoreError::Failed(format!(
            "{inserted} of {} deferred jobs inserted",
            rows.len()
        )));
    }
    rows.clear();
    Ok(())
}

/// The statement of [`draw_ids`].
struct DrawIds {
    count: i64,
}

impl QueryId for DrawIds {
    type QueryId = DrawIds;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for DrawIds {
    type SqlType = BigInt;
}

impl RunQueryDsl<PgConnection> for DrawIds {}

impl QueryFragment<Pg> for DrawIds {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, ",
        );
        out.push_bind_param::<BigInt, _>(&self.count)?;
        out.push_sql(")");
        Ok(())
    }
}

/// The statement of [`flush`]: one array per column, with the status, attempts and delivery
/// phase as literals (as `JobStatus` and `Delivery` store them: `'Pending'` and `0`).
struct InsertDeferred<'a> {
    ids: Vec<i64>,
    packages: Vec<&'a str>,
    package_names: Vec<&'a str>,
    robot_addresses: Vec<&'a str>,
    robot_names: Vec<&'a str>,
    run_ats: Vec<i64>,
    schedule_ids: Vec<Option<i64>>,
    created_ats: Vec<i64>,
}

impl QueryId for InsertDeferred<'_> {
    type QueryId = InsertDeferred<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl RunQueryDsl<PgConnection> for InsertDeferred<'_> {}

impl QueryFragment<Pg> for InsertDeferred<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::Array;
        out.push_sql(
            "WITH job AS (INSERT INTO jobs (id, status, package, package_name, robot_address, \
             robot_name, run_at, schedule_id, attempts, created_at, updated_at, wake_at, \
             delivery, forced) SELECT j.id, 'Pending', j.package, j.package_name, \
             j.robot_address, j.robot_name, j.run_at, j.schedule_id, 0, j.created_at, \
             j.created_at, j.run_at, 0, FALSE FROM unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.ids)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Text>, _>(&self.packages)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.package_names)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.robot_addresses)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.robot_names)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.run_ats)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.schedule_ids)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.created_ats)?;
        out.push_sql(
            "::bigint[]) AS j(id, package, package_name, robot_address, robot_name, run_at, \
             schedule_id, created_at) RETURNING id) \
             INSERT INTO pending_package_files (job_id) SELECT id FROM job",
        );
        Ok(())
    }
}
