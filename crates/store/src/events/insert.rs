//! The statements that insert a batch's events, kept prepared.
//!
//! Diesel prepares a multi-row insert built from a `Vec` anew every time (its text depends on
//! the number of rows), and preparing a few hundred rows' worth of placeholders costs more than
//! running it. So:
//!
//! - SQLite: a multi-row `INSERT` per chunk, in chunks of 256, 128, ..., 1 rows, each size a
//!   type of its own ([`Rows`]) so that diesel caches its prepared statement: at most nine
//!   shapes, whatever the batch sizes.
//! - PostgreSQL: one statement per batch, whatever its size: the rows as one array per column,
//!   `unnest`ed. The same statement also takes the events lock before it draws any id and
//!   announces the last id (events.rs): one round trip instead of four.

use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, RunQueryDsl, SqliteConnection};

use super::NewEvent;
use crate::StoreError;

/// The largest chunk: 256 rows of 11 values, far below SQLite's 32,766 bound values.
const LARGEST: usize = 256;

const COLUMNS: &str = "INSERT INTO events (type, subject, at, reason, job_id, from_status, \
                       to_status, attempts, robot_address, last_error, data) VALUES ";

/// SQLite: inserts `events` in chunks of the nine cached sizes, in order (ids follow it).
pub(super) fn sqlite(conn: &mut SqliteConnection, events: &[NewEvent]) -> Result<(), StoreError> {
    let mut rest = events;
    while !rest.is_empty() {
        // The largest power of two that fits, at most LARGEST.
        let size = if rest.len() >= LARGEST {
            LARGEST
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, after) = rest.split_at(size);
        match size {
            256 => Rows::<256>(chunk).execute(conn)?,
            128 => Rows::<128>(chunk).execute(conn)?,
            64 => Rows::<64>(chunk).execute(conn)?,
            32 => Rows::<32>(chunk).execute(conn)?,
            16 => Rows::<16>(chunk).execute(conn)?,
            8 => Rows::<8>(chunk).execute(conn)?,
            4 => Rows::<4>(chunk).execute(conn)?,
            2 => Rows::<2>(chunk).execute(conn)?,
            _ => Rows::<1>(chunk).execute(conn)?,
        };
        rest = after;
    }
    Ok(())
}

/// `N` events in one `INSERT`; the type, and so the cached statement, depends on `N` alone.
struct Rows<'a, const N: usize>(&'a [NewEvent]);

impl<const N: usize> QueryId for Rows<'_, N> {
    type QueryId = Rows<'static, N>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const N: usize> RunQueryDsl<SqliteConnection> for Rows<'_, N> {}

impl<const N: usize> QueryFragment<Sqlite> for Rows<'_, N> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        debug_assert_eq!(self.0.len(), N);
        out.push_sql(COLUMNS);
        for (index, event) in self.0.iter().enumerate() {
            out.push_sql(if index == 0 { "(" } else { ", (" });
            out.push_bind_param::<Text, _>(event.kind.as_str())?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&event.subject)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&event.at)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&event.reason)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&event.job_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&event.from_status)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&event.to_status)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Integer>, _>(&event.attempts)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&event.robot_address)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&event.last_error)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&event.data)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

/// PostgreSQL: takes the events lock, inserts `events` in order and announces the last id on
/// `channel`, in one statement; the last id.
#[cfg(feature = "postgres")]
pub(super) fn pg(
    conn: &mut diesel::PgConnection,
    events: &[NewEvent],
    lock: i64,
    channel: &str,
) -> Result<i64, StoreError> {
    let status = |status: Option<crate::JobStatus>| status.map(crate::JobStatus::as_str);
    let statement = pg::Batch {
        lock,
        kinds: events.iter().map(|event| event.kind.as_str()).collect(),
        subjects: events.iter().map(|event| event.subject.as_str()).collect(),
        ats: events.iter().map(|event| event.at).collect(),
        reasons: events.iter().map(|event| event.reason.as_deref()).collect(),
        job_ids: events.iter().map(|event| event.job_id).collect(),
        from_statuses: events
            .iter()
            .map(|event| status(event.from_status))
            .collect(),
        to_statuses: events.iter().map(|event| status(event.to_status)).collect(),
        attempts: events.iter().map(|event| event.attempts).collect(),
        robot_addresses: events
            .iter()
            .map(|event| event.robot_address.as_deref())
            .collect(),
        last_errors: events
            .iter()
            .map(|event| event.last_error.as_deref())
            .collect(),
        data: events.iter().map(|event| event.data.as_deref()).collect(),
        channel,
    };
    let (last, _notified): (i64, String) = statement.get_result(conn)?;
    Ok(last)
}

#[cfg(feature = "postgres")]
mod pg {
    use diesel::pg::Pg;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
    use diesel::{PgConnection, QueryResult, RunQueryDsl};

    /// A batch's events, one array per column. The statement's text never changes, so diesel
    /// keeps it prepared.
    pub(super) struct Batch<'a> {
        pub(super) lock: i64,
        pub(super) kinds: Vec<&'a str>,
        pub(super) subjects: Vec<&'a str>,
        pub(super) ats: Vec<i64>,
        pub(super) reasons: Vec<Option<&'a str>>,
        pub(super) job_ids: Vec<Option<i64>>,
        pub(super) from_statuses: Vec<Option<&'static str>>,
        pub(super) to_statuses: Vec<Option<&'static str>>,
        pub(super) attempts: Vec<Option<i32>>,
        pub(super) robot_addresses: Vec<Option<&'a str>>,
        pub(super) last_errors: Vec<Option<&'a str>>,
        pub(super) data: Vec<Option<&'a str>>,
        pub(super) channel: &'a str,
    }

    impl QueryId for Batch<'_> {
        type QueryId = Batch<'static>;
        const HAS_STATIC_QUERY_ID: bool = true;
    }

    impl Query for Batch<'_> {
        type SqlType = (BigInt, Text);
    }

    impl RunQueryDsl<PgConnection> for Batch<'_> {}

    impl QueryFragment<Pg> for Batch<'_> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
            // The lock first: the sort below consumes every joined row, so the lock is held
            // before the first id is drawn (ids are drawn above the sort, in `ord` order).
            out.push_sql("WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock(");
            out.push_bind_param::<BigInt, _>(&self.lock)?;
            out.push_sql(
                ")), ins AS (INSERT INTO events (type, subject, at, reason, job_id, \
                 from_status, to_status, attempts, robot_address, last_error, data) \
                 SELECT e.type, e.subject, e.at, e.reason, e.job_id, e.from_status, \
                 e.to_status, e.attempts, e.robot_address, e.last_error, e.data \
                 FROM lock, unnest(",
            );
            out.push_bind_param::<Array<Text>, _>(&self.kinds)?;
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<Text>, _>(&self.subjects)?;
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<BigInt>, _>(&self.ats)?;
            out.push_sql("::bigint[], ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.reasons)?;
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.job_ids)?;
            out.push_sql("::bigint[], ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.from_statuses)?;
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.to_statuses)?;
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<Nullable<Integer>>, _>(&self.attempts)?;
            out.push_sql("::integer[], ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.robot_addresses)?;
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.last_errors)?;
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(&self.data)?;
            out.push_sql(
                "::text[]) WITH ORDINALITY AS e(type, subject, at, reason, job_id, from_status, \
                 to_status, attempts, robot_address, last_error, data, ord) \
                 ORDER BY e.ord RETURNING id), \
                 last AS (SELECT max(id) AS id FROM ins) \
                 SELECT id, pg_notify(",
            );
            out.push_bind_param::<Text, _>(self.channel)?;
            // pg_notify gives `void`, which no client type reads: as text it is ''.
            out.push_sql(", id::text)::text FROM last");
            Ok(())
        }
    }
}
