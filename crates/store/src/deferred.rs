//! PostgreSQL: a batch's triggered jobs inserted together, at the end of the batch, in one
//! statement, instead of one round trip per trigger (which is what bounds one instance's writer
//! there: it waits for each answer in turn).
//!
//! A trigger's operation needs its job's id and whether its robot exists before the batch ends
//! (for its answer and its idempotency record), so:
//!
//! - ids are drawn from the jobs' sequence for the whole batch in one round trip, at its first
//!   trigger (ids left over are gaps: ids are never reused, never dense);
//! - a robot is known to exist without a query once a committed batch saw it (robots are never
//!   deleted); an address not seen yet is looked up once.
//!
//! The rows wait in the batch like its events (events.rs): an operation that fails takes its
//! rows with it, and they are inserted just before the events (which refer to them), in the
//! batch's transaction. The operation that inserted a job must not read or change it afterwards
//! (its row is not there yet); only `WriteTx::insert_job` defers, and a trigger only answers.
//! SQLite, in process, inserts each job at once (`jobs::insert_row`): a statement costs no
//! round trip there.

#![cfg_attr(not(feature = "postgres"), allow(dead_code))]

use std::collections::HashSet;

/// The deferred jobs of the batch, and what the writer knows across batches.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    pub(crate) rows: Vec<DeferredJob>,
    /// Ids drawn for this batch and not used yet, the next one last.
    ids: Vec<i64>,
    /// Writes in the batch: how many ids to draw at once.
    batch: usize,
    /// Robots that committed batches saw (robots are never deleted).
    known: HashSet<String>,
    /// Robots this batch looked up and found, known once it commits.
    confirmed: Vec<String>,
}

/// A Pending job waiting for the batch's insert, as its row stores it.
#[derive(Debug, Clone)]
pub(crate) struct DeferredJob {
    pub(crate) id: i64,
    pub(crate) package: String,
    pub(crate) package_name: String,
    pub(crate) robot_address: String,
    pub(crate) robot_name: String,
    pub(crate) run_at: i64,
    pub(crate) schedule_id: Option<i64>,
    pub(crate) created_at: i64,
}

/// Where a failing operation's rows start, to forget them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    rows: usize,
    confirmed: usize,
}

impl Deferred {
    /// A new batch of `size` writes.
    pub(crate) fn start(&mut self, size: usize) {
        self.rows.clear();
        self.ids.clear();
        self.confirmed.clear();
        self.batch = size.max(1);
    }

    /// The batch starts over (one of its writes failed): its rows go; drawn ids stay usable.
    pub(crate) fn restart(&mut self) {
        self.rows.clear();
        self.confirmed.clear();
    }

    /// The batch committed: the robots it found are known from now on.
    pub(crate) fn committed(&mut self) {
        self.known.extend(self.confirmed.drain(..));
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            rows: self.rows.len(),
            confirmed: self.confirmed.len(),
        }
    }

    pub(crate) fn forget_after(&mut self, mark: Mark) {
        self.rows.truncate(mark.rows);
        self.confirmed.truncate(mark.confirmed);
    }

    pub(crate) fn is_known(&self, robot_address: &str) -> bool {
        self.known.contains(robot_address)
    }

    /// The robot was found in this batch's transaction.
    pub(crate) fn confirm(&mut self, robot_address: &str) {
        self.confirmed.push(robot_address.to_owned());
    }

    /// How many ids to draw when none is left.
    pub(crate) fn ids_wanted(&self) -> usize {
        self.batch
    }

    pub(crate) fn next_id(&mut self) -> Option<i64> {
        self.ids.pop()
    }

    /// `drawn`, in the order the sequence gave them. A batch that used them all (an operation
    /// that creates many jobs) draws twice as many next time.
    pub(crate) fn add_ids(&mut self, mut drawn: Vec<i64>) {
        drawn.sort_unstable();
        drawn.reverse();
        self.ids = drawn;
        self.batch = self.batch.saturating_mul(2);
    }
}

/// Inserts the batch's deferred jobs (PostgreSQL; SQLite never defers), in its transaction.
pub(crate) fn flush(
    conn: &mut crate::connection::DbConnection,
    deferred: &mut Deferred,
) -> Result<(), crate::StoreError> {
    match conn {
        crate::connection::DbConnection::Sqlite(_) => {
            debug_assert!(deferred.rows.is_empty(), "SQLite never defers a job");
            Ok(())
        }
        #[cfg(feature = "postgres")]
        crate::connection::DbConnection::Pg(conn) => {
            crate::pg_insert::flush(conn, &mut deferred.rows)
        }
    }
}
