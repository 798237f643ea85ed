//! The single writer with group commit.
//!
//! SQLite allows one writer at a time, and a flushed commit (`synchronous = FULL`) costs the same
//! whether it carries one row or a thousand. So every write goes through one thread that owns the
//! write connection: it takes all the requests that are waiting, runs them in one `BEGIN
//! IMMEDIATE` transaction, commits once, and only then tells each requester how its part went.
//! A commit that fails fails them all, and none of them was acknowledged before.
//!
//! PostgreSQL allows many writers, but a commit is a flush there too, so each instance groups its
//! writes the same way; only the statement that opens the transaction differs (SQLite's `BEGIN
//! IMMEDIATE` takes the write lock up front, so a batch never fails half-way for want of it).
//!
//! A request that fails must not take the others down, nor leave half its changes behind. Writes
//! almost never fail, so a batch first runs without savepoints (they cost a quarter of the
//! writer's time); if one write fails, the transaction is rolled back and the batch runs again,
//! each write in a savepoint of its own, so the failure undoes only its own changes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};

use crate::connection::DbConnection;
use crate::deferred::Deferred;
use crate::events::NewEvent;
use crate::{Location, StoreError, Unreachable};

/// A write transaction, lent to one operation at a time. Operations are the methods defined on
/// it in the rest of this crate.
pub struct WriteTx<'a> {
    pub(crate) conn: &'a mut DbConnection,
    /// This instance's id.
    pub(crate) instance: &'a str,
    /// The events of the batch so far, inserted just before its commit (events.rs).
    pub(crate) events: &'a mut Vec<NewEvent>,
    /// PostgreSQL: the batch's jobs inserted together before its events (deferred.rs).
    pub(crate) deferred: &'a mut Deferred,
}

/// A write waiting in a batch: run once (again, if the batch had to start over), then told how
/// it went.
trait Pending: Send {
    /// Runs the write, in a savepoint of its own when `isolated`. False when it failed.
    fn attempt(&mut self, tx: &mut WriteTx<'_>, isolated: bool) -> bool;
    /// Tells the requester its result, or the batch's commit error if there was one.
    fn finish(self: Box<Self>, commit_error: Option<&Arc<StoreError>>);
}

type Operation = Box<dyn Pending>;

struct Write<T, F, R> {
    op: F,
    reply: R,
    result: Option<Result<T, StoreError>>,
}

impl<T, F, R> Pending for Write<T, F, R>
where
    T: Send,
    F: Fn(&mut WriteTx<'_>) -> Result<T, StoreError> + Send,
    R: FnOnce(Result<T, StoreError>) + Send,
{
    fn attempt(&mut self, tx: &mut WriteTx<'_>, isolated: bool) -> bool {
        let result = if isolated {
            run_isolated(tx, &self.op)
        } else {
            (self.op)(tx)
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit_error: Option<&Arc<StoreError>>) {
        let Write { reply, result, .. } = *self;
        reply(match (commit_error, result) {
            (None, Some(result)) => result,
            (Some(error), _) => Err(StoreError::replicate(error)),
            (None, None) => Err(StoreError::WriterStopped),
        });
    }
}

fn operation<T, F, R>(op: F, reply: R) -> Operation
where
    T: Send + 'static,
    F: Fn(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    R: FnOnce(Result<T, StoreError>) + Send + 'static,
{
    Box::new(Write {
        op,
        reply,
        result: None,
    })
}

enum Task {
    Write(Operation),
    Stop,
}

/// Counters of the writer, for metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    batches: AtomicU64,
    operations: AtomicU64,
    failed_commits: AtomicU64,
    events: AtomicU64,
    commit_micros: AtomicU64,
    max_batch: AtomicU64,
    batch_size_buckets: [AtomicU64; BATCH_BUCKETS.len()],
    commit_latency_buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len()],
}

/// Upper bounds of the batch-size histogram buckets (the last bucket is open).
pub const BATCH_BUCKETS: [u64; 8] = [1, 2, 5, 10, 50, 100, 500, 1000];
/// Upper bounds, in microseconds, of the commit-latency histogram buckets.
pub const LATENCY_BUCKETS_MICROS: [u64; 10] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// A point-in-time copy of [`WriterStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStatsSnapshot {
    pub batches: u64,
    pub operations: u64,
    pub failed_commits: u64,
    /// Events committed.
    pub events: u64,
    pub commit_micros: u64,
    pub max_batch: u64,
    /// Cumulative counts per bucket of [`BATCH_BUCKETS`] (`le` semantics).
    pub batch_size_buckets: Vec<u64>,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS_MICROS`].
    pub commit_latency_buckets: Vec<u64>,
}

impl WriterStats {
    fn record(&self, batch: usize, micros: u64, committed: bool) {
        let batch = batch as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.operations.fetch_add(batch, Ordering::Relaxed);
        self.commit_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_batch.fetch_max(batch, Ordering::Relaxed);
        if !committed {
            self.failed_commits.fetch_add(1, Ordering::Relaxed);
        }
        for (bound, count) in BATCH_BUCKETS.iter().zip(&self.batch_size_buckets) {
            if batch <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (bound, count) in LATENCY_BUCKETS_MICROS
            .iter()
            .zip(&self.commit_latency_buckets)
        {
            if micros <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn snapshot(&self) -> WriterStatsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStatsSnapshot {
            batches: load(&self.batches),
            operations: load(&self.operations),
            failed_commits: load(&self.failed_commits),
            events: load(&self.events),
            commit_micros: load(&self.commit_micros),
            max_batch: load(&self.max_batch),
            batch_size_buckets: self.batch_size_buckets.iter().map(load).collect(),
            commit_latency_buckets: self.commit_latency_buckets.iter().map(load).collect(),
        }
    }
}

/// The handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    sender: SyncSender<Task>,
    stats: Arc<WriterStats>,
    published: Arc<Published>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// What the writer tells about the events it committed.
#[derive(Default)]
pub(crate) struct Published {
    last: AtomicI64,
    hook: OnceLock<Box<dyn Fn(i64) + Send + Sync>>,
}

impl Published {
    fn publish(&self, last: i64) {
        self.last.fetch_max(last, Ordering::AcqRel);
        if let Some(hook) = self.hook.get() {
            hook(last);
        }
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn start(
        conn: DbConnection,
        queue: usize,
        max_batch: usize,
        upkeep: Upkeep,
        instance: Arc<str>,
    ) -> Result<Writer, StoreError> {
        let (sender, receiver) = mpsc::sync_channel(queue.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let published = Arc::new(Published::default());
        let thread_published = Arc::clone(&published);
        let thread = std::thread::Builder::new()
            .name("db-writer".to_owned())
            .spawn(move || {
                run(
                    conn,
                    receiver,
                    max_batch.max(1),
                    &thread_stats,
                    &thread_published,
                    &upkeep,
                    &instance,
                )
            })
            .map_err(|source| StoreError::Thread {
                thread: "writer",
                source,
            })?;
        Ok(Writer {
            sender,
            stats,
            published,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Queues `op` for the next batch. `done` gets its result once the batch's commit is durable
    /// (or has failed). `done` runs on the writer thread: it must only hand the result on.
    /// `op` may run twice (see the module doc), so it must do nothing but database work.
    ///
    /// Fails at once, without calling `done`, when the queue is full or the writer has stopped.
    pub fn submit<T, F, C>(&self, op: F, done: C) -> Result<(), StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
        C: FnOnce(Result<T, StoreError>) + Send + 'static,
    {
        match self.sender.try_send(Task::Write(operation(op, done))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(StoreError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::WriterStopped),
        }
    }

    /// Runs `op` in the next batch and blocks until it is committed. For start-up, shutdown and
    /// tests; request paths use [`Writer::submit`].
    pub fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (sender, receiver) = mpsc::sync_channel(1);
        // The receiver only goes away if the caller's thread died; nothing to tell then.
        let reply = move |result| drop(sender.send(result));
        // A blocking send: start-up work must not fail because requests filled the queue.
        self.sender
            .send(Task::Write(operation(op, reply)))
            .map_err(|_| StoreError::WriterStopped)?;
        receiver.recv().map_err(|_| StoreError::WriterStopped)?
    }

    pub fn stats(&self) -> WriterStatsSnapshot {
        self.stats.snapshot()
    }

    /// Calls `hook` with the highest event id of every commit that wrote events, on the writer
    /// thread, after the commit: it must only pass the id on. Set once; later calls are ignored
    /// (false).
    pub fn on_events(&self, hook: impl Fn(i64) + Send + Sync + 'static) -> bool {
        self.published.hook.set(Box::new(hook)).is_ok()
    }

    /// The highest event id this writer committed (0 before the first).
    pub fn last_event_id(&self) -> i64 {
        self.published.last.load(Ordering::Acquire)
    }

    /// Commits what is queued, stops the thread and waits for it. Later submissions fail with
    /// [`StoreError::WriterStopped`].
    pub fn shutdown(&self) {
        let _ = self.sender.send(Task::Stop);
        join(&self.thread, "writer");
    }
}

/// Waits for a thread of the store, once (later calls find the slot empty).
pub(crate) fn join(thread: &Mutex<Option<JoinHandle<()>>>, name: &str) {
    let handle = thread.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(handle) = handle
        && handle.join().is_err()
    {
        log::error!("the database {name} thread panicked");
    }
}

impl WriteTx<'_> {
    /// Runs `op` in a savepoint of its own: if it fails, its changes are undone and the rest of
    /// the transaction goes on.
    pub fn savepoint<T, F>(&mut self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError>,
    {
        savepoint(self, op)
    }
}

fn savepoint<T, F>(tx: &mut WriteTx<'_>, op: F) -> Result<T, StoreError>
where
    F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError>,
{
    let instance = tx.instance;
    let mark = tx.events.len();
    let deferred_mark = tx.deferred.mark();
    let events = &mut *tx.events;
    let deferred = &mut *tx.deferred;
    let outcome = tx.conn.transaction(|conn| {
        op(&mut WriteTx {
            conn,
            instance,
            events: &mut *events,
            deferred: &mut *deferred,
        })
    });
    if outcome.is_err() {
        events.truncate(mark);
        deferred.forget_after(deferred_mark);
    }
    outcome
}

/// Runs one submitted operation in a savepoint of its own, so that its failure undoes only its
/// own changes. The savepoint statements are prepared once and reused: diesel's nested
/// transactions hand SQLite the text to parse every time.
fn run_isolated<T, F>(tx: &mut WriteTx<'_>, op: &F) -> Result<T, StoreError>
where
    F: Fn(&mut WriteTx<'_>) -> Result<T, StoreError>,
{
    use diesel::RunQueryDsl;
    statements::Savepoint.execute(tx.conn)?;
    let mark = tx.event_mark();
    let deferred_mark = tx.deferred.mark();
    let outcome = op(tx).and_then(|value| {
        // On PostgreSQL, RELEASE fails when a statement of the operation failed and the
        // operation went on regardless (its transaction is aborted): then it failed too.
        statements::Release.execute(tx.conn)?;
        Ok(value)
    });
    if outcome.is_err() {
        tx.forget_events_after(mark);
        tx.deferred.forget_after(deferred_mark);
        statements::RollbackTo.execute(tx.conn)?;
        statements::Release.execute(tx.conn)?;
    }
    outcome
}

/// False when a statement failed inside the transaction and it can only roll back: PostgreSQL
/// aborts the whole transaction on any failed statement, and its COMMIT then rolls back without
/// reporting an error, so an operation that went on after a failure would be acknowledged and
/// lost. (SQLite undoes the failed statement alone; nothing to ask there.)
fn healthy(conn: &mut DbConnection) -> bool {
    use diesel::RunQueryDsl;
    !conn.shared() || statements::Check.execute(conn).is_ok()
}

/// The savepoint statements of [`run_isolated`], each a type with a fixed text so that diesel
/// caches its prepared statement.
mod statements {
    use diesel::backend::Backend;
    use diesel::query_builder::{AstPass, QueryFragment, QueryId};
    use diesel::{QueryResult, RunQueryDsl};

    use crate::connection::DbConnection;

    macro_rules! statement {
        ($name:ident, $sql:literal) => {
            #[derive(Debug, Clone, Copy, QueryId)]
            pub(super) struct $name;

            impl<DB: Backend> QueryFragment<DB> for $name {
                fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
                    out.push_sql($sql);
                    Ok(())
                }
            }

            impl RunQueryDsl<DbConnection> for $name {}
        };
    }

    statement!(Savepoint, "SAVEPOINT rpa_operation");
    statement!(Release, "RELEASE rpa_operation");
    statement!(RollbackTo, "ROLLBACK TO rpa_operation");
    statement!(Check, "SELECT 1");
}

/// What the writer looks after between batches.
pub(crate) struct Upkeep {
    /// The checkpoint thread's request to start the WAL over (see checkpoint.rs), served by the
    /// writer between batches because only there no write is in the way. SQLite only.
    pub(crate) wal_restart: Arc<AtomicBool>,
    /// The connection's usual busy timeout (put back after a WAL restart; set again on a new
    /// connection).
    pub(crate) busy_timeout: Duration,
    /// Where to connect again when a database server drops the connection.
    pub(crate) location: Location,
}

fn run(
    mut conn: DbConnection,
    receiver: Receiver<Task>,
    max_batch: usize,
    stats: &WriterStats,
    published: &Published,
    upkeep: &Upkeep,
    instance: &str,
) {
    let mut batch: Vec<Operation> = Vec::with_capacity(max_batch);
    let mut events: Vec<NewEvent> = Vec::new();
    let mut deferred = Deferred::default();
    let mut stopping = false;
    let mut broken = false;
    while !stopping {
        match receiver.recv() {
            Ok(Task::Write(op)) => batch.push(op),
            Ok(Task::Stop) | Err(_) => break,
        }
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(Task::Write(op)) => batch.push(op),
                Ok(Task::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if broken {
            // A lost server connection: connect again before the next batch (and fail this one
            // at once, as unavailable, while the server stays away).
            match crate::connection::establish_writer(&upkeep.location, upkeep.busy_timeout) {
                Ok(fresh) => {
                    log::info!("database writer connected again to {}", upkeep.location);
                    conn = fresh;
                }
                Err(source) => {
                    let error = Arc::new(StoreError::from(Unreachable::Reconnect {
                        location: upkeep.location.to_string(),
                        source,
                    }));
                    stats.record(batch.len(), 0, false);
                    for op in batch.drain(..) {
                        op.finish(Some(&error));
                    }
                    continue;
                }
            }
        }
        broken = commit_batch(
            &mut conn,
            instance,
            &mut batch,
            &mut events,
            &mut deferred,
            stats,
            published,
        );
        if upkeep.wal_restart.swap(false, Ordering::AcqRel)
            && let Some(conn) = conn.sqlite()
        {
            crate::checkpoint::restart(conn, upkeep.busy_timeout);
        }
    }
    // Whatever arrived after the stop: refuse it rather than leave its requester waiting.
    drop(receiver);
}

/// Opens the batch's transaction: `BEGIN IMMEDIATE` on SQLite takes the write lock at once.
fn begin(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    match conn {
        DbConnection::Sqlite(conn) => {
            AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE")
        }
        #[cfg(feature = "postgres")]
        DbConnection::Pg(conn) => AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN"),
    }
}

/// Runs and commits one batch, then reports to every requester. True when the connection was
/// lost on the way.
fn commit_batch(
    conn: &mut DbConnection,
    instance: &str,
    batch: &mut Vec<Operation>,
    events: &mut Vec<NewEvent>,
    deferred: &mut Deferred,
    stats: &WriterStats,
    published: &Published,
) -> bool {
    let size = batch.len();
    let started = Instant::now();
    events.clear();
    deferred.start(size);
    let outcome = (|| -> Result<Option<(i64, usize)>, StoreError> {
        begin(conn)?;
        let clean = batch.iter_mut().all(|op| {
            op.attempt(
                &mut WriteTx {
                    conn: &mut *conn,
                    instance,
                    events: &mut *events,
                    deferred: &mut *deferred,
                },
                false,
            )
        }) && healthy(conn);
        if !clean {
            // One write failed, and without savepoints its partial changes cannot be told
            // apart from the others': start over, each write in a savepoint of its own.
            <DbConnection as Connection>::TransactionManager::rollback_transaction(&mut *conn)?;
            events.clear();
            deferred.restart();
            begin(conn)?;
            for op in batch.iter_mut() {
                op.attempt(
                    &mut WriteTx {
                        conn: &mut *conn,
                        instance,
                        events: &mut *events,
                        deferred: &mut *deferred,
                    },
                    true,
                );
            }
            if !healthy(conn) {
                // Cannot happen: each write's savepoint was released or rolled back. Were it to,
                // committing would report success for writes that were rolled back.
                <DbConnection as Connection>::TransactionManager::rollback_transaction(&mut *conn)?;
                return Err(StoreError::Aborted);
            }
        }
        // PostgreSQL: the batch's triggered jobs, before the events that refer to them.
        if let Err(error) = crate::deferred::flush(conn, deferred) {
            <DbConnection as Connection>::TransactionManager::rollback_transaction(&mut *conn)?;
            return Err(error);
        }
        // Last before the commit: on PostgreSQL it waits for other instances' event commits
        // (events.rs), so the shorter it is held, the better.
        let count = events.len();
        let last = match crate::events::flush(conn, events) {
            Ok(last) => last,
            Err(error) => {
                <DbConnection as Connection>::TransactionManager::rollback_transaction(&mut *conn)?;
                return Err(error);
            }
        };
        if let Err(error) =
            <DbConnection as Connection>::TransactionManager::commit_transaction(&mut *conn)
        {
            // diesel rolls back a failed top-level COMMIT itself; make sure nothing stays open.
            if <DbConnection as Connection>::TransactionManager::transaction_manager_status_mut(
                &mut *conn,
            )
            .transaction_depth()
            .ok()
            .flatten()
            .is_some()
            {
                let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(
                    &mut *conn,
                );
            }
            return Err(error.into());
        }
        Ok(last.map(|last| (last, count)))
    })();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    stats.record(size, micros, outcome.is_ok());
    if outcome.is_ok() {
        deferred.committed();
    }
    if let Ok(Some((last, count))) = &outcome {
        stats
            .events
            .fetch_add(u64::try_from(*count).unwrap_or(u64::MAX), Ordering::Relaxed);
        published.publish(*last);
    }
    let error = outcome.err().map(Arc::new);
    if let Some(error) = &error {
        log::warn!("database commit of {size} writes failed: {error}");
    }
    for op in batch.drain(..) {
        op.finish(error.as_ref());
    }
    matches!(error.as_deref(), Some(StoreError::Unavailable(_)))
}
