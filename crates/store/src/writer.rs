//! The single writer with group commit.
//!
//! SQLite allows one writer at a time, and a flushed commit (`synchronous = FULL`) costs the same
//! whether it carries one row or a thousand. So every write goes through one thread that owns the
//! write connection: it takes all the requests that are waiting, runs each in its own savepoint
//! inside one `BEGIN IMMEDIATE` transaction, commits once, and only then tells each requester how
//! its part went. A request that fails rolls back its savepoint alone; a commit that fails fails
//! them all, and none of them was acknowledged before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::{Connection, SqliteConnection};

use crate::StoreError;

/// A write transaction, lent to one operation at a time. Operations are the methods defined on
/// it in the rest of this crate.
pub struct WriteTx<'a> {
    pub(crate) conn: &'a mut SqliteConnection,
}

/// Tells the requester how its write went, given the batch's commit error if there was one.
type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// Runs a write inside the batch transaction, or, given `None` (the transaction could not even
/// begin), runs nothing; either way it returns the requester's completion.
type Operation = Box<dyn FnOnce(Option<&mut WriteTx<'_>>) -> Completion + Send>;

fn operation<T, F, R>(op: F, reply: R) -> Operation
where
    T: Send + 'static,
    F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    R: FnOnce(Result<T, StoreError>) + Send + 'static,
{
    Box::new(move |tx: Option<&mut WriteTx<'_>>| {
        let result = tx.map(|tx| savepoint(tx, op));
        Box::new(move |commit_error: Option<&StoreError>| {
            reply(match (commit_error, result) {
                (None, Some(result)) => result,
                (Some(error), _) => Err(error.replicate()),
                (None, None) => Err(StoreError::WriterStopped),
            })
        })
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
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn start(
        conn: SqliteConnection,
        queue: usize,
        max_batch: usize,
    ) -> Result<Writer, StoreError> {
        let (sender, receiver) = mpsc::sync_channel(queue.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("db-writer".to_owned())
            .spawn(move || run(conn, receiver, max_batch.max(1), &thread_stats))
            .map_err(|error| {
                StoreError::Pool(format!("cannot start the writer thread: {error}"))
            })?;
        Ok(Writer {
            sender,
            stats,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Queues `op` for the next batch. `done` gets its result once the batch's commit is durable
    /// (or has failed). `done` runs on the writer thread: it must only hand the result on.
    ///
    /// Fails at once, without calling `done`, when the queue is full or the writer has stopped.
    pub fn submit<T, F, C>(&self, op: F, done: C) -> Result<(), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
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
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
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

    /// Commits what is queued, stops the thread and waits for it. Later submissions fail with
    /// [`StoreError::WriterStopped`].
    pub fn shutdown(&self) {
        let _ = self.sender.send(Task::Stop);
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            log::error!("the database writer thread panicked");
        }
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
    tx.conn.transaction(|conn| op(&mut WriteTx { conn }))
}

fn run(
    mut conn: SqliteConnection,
    receiver: Receiver<Task>,
    max_batch: usize,
    stats: &WriterStats,
) {
    let mut batch: Vec<Operation> = Vec::with_capacity(max_batch);
    let mut stopping = false;
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
        commit_batch(&mut conn, &mut batch, stats);
    }
    // Whatever arrived after the stop: refuse it rather than leave its requester waiting.
    drop(receiver);
}

fn commit_batch(conn: &mut SqliteConnection, batch: &mut Vec<Operation>, stats: &WriterStats) {
    let size = batch.len();
    let started = Instant::now();
    let mut completions: Vec<Completion> = Vec::with_capacity(size);
    let outcome = (|| -> Result<(), StoreError> {
        AnsiTransactionManager::begin_transaction_sql(&mut *conn, "BEGIN IMMEDIATE")?;
        for op in batch.drain(..) {
            completions.push(op(Some(&mut WriteTx { conn: &mut *conn })));
        }
        if let Err(error) = AnsiTransactionManager::commit_transaction(&mut *conn) {
            // diesel rolls back a failed top-level COMMIT itself; make sure nothing stays open.
            if AnsiTransactionManager::transaction_manager_status_mut(&mut *conn)
                .transaction_depth()
                .ok()
                .flatten()
                .is_some()
            {
                let _ = AnsiTransactionManager::rollback_transaction(&mut *conn);
            }
            return Err(error.into());
        }
        Ok(())
    })();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    stats.record(size, micros, outcome.is_ok());
    match &outcome {
        Ok(()) => {
            for completion in completions {
                completion(None);
            }
        }
        Err(error) => {
            log::warn!("database commit of {size} writes failed: {error}");
            for completion in completions {
                completion(Some(error));
            }
            // Operations that never ran because BEGIN failed get the same answer.
            for op in batch.drain(..) {
                op(None)(Some(error));
            }
        }
    }
}

impl StoreError {
    /// The same failure again, for each write of a batch whose commit failed.
    pub(crate) fn replicate(&self) -> StoreError {
        match self {
            StoreError::Busy => StoreError::Busy,
            StoreError::Full => StoreError::Full,
            StoreError::ReadOnly(reason) => StoreError::ReadOnly(reason.clone()),
            StoreError::Overloaded => StoreError::Overloaded,
            StoreError::WriterStopped => StoreError::WriterStopped,
            other => StoreError::Failed(other.to_string()),
        }
    }
}
