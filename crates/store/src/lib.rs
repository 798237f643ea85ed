#![doc = include_str!("../README.md")]

mod checkpoint;
mod connection;
mod error;
mod idempotency;
mod jobs;
mod retention;
mod robots;
mod schedules;
mod schema;
mod sending;
mod time;
mod transitions;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use diesel::SqliteConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use writer::WalRestart;

pub use error::StoreError;
pub use idempotency::{Created, Prior};
pub use jobs::{
    Delivery, DueJob, IdempotencyKey, InsertJob, JobEventRecord, JobFilter, JobRecord, JobStatus,
    NewJob, PackageFile,
};
pub use retention::PurgedJob;
pub use robots::{RobotFilter, RobotMessageRecord, RobotRecord, RobotRegistration};
pub use schedules::{
    InsertSchedule, NewSchedule, ScheduleEventRecord, ScheduleFilter, ScheduleRecord, StopOutcome,
};
pub use sending::{Claimed, DueOutcome, Reach, RobotClaim};
pub use transitions::{AckOutcome, ChangeOutcome, DeclineOutcome, DeliveryPolicy, ReportOutcome};
pub use writer::{
    BATCH_BUCKETS, LATENCY_BUCKETS_MICROS, WriteTx, Writer, WriterStats, WriterStatsSnapshot,
};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// How to open the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The SQLite database file; its folder is created when missing.
    pub path: PathBuf,
    /// Pooled read connections.
    pub readers: u32,
    /// Write requests that may wait for the writer before new ones are refused as overloaded.
    pub writer_queue: usize,
    /// Write requests committed together at most.
    pub max_batch: usize,
    /// How long a write waits for a lock held by another connection before failing as busy.
    pub busy_timeout: Duration,
    /// The largest the database file may grow, in bytes; beyond it writes fail as full.
    pub max_size: Option<u64>,
    /// WAL pages past which the writer is asked to start the WAL over (see checkpoint.rs):
    /// bounds the WAL file and what a restart after a crash reads back.
    pub wal_restart_pages: u32,
}

impl StoreConfig {
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            readers: 8,
            writer_queue: 65_536,
            max_batch: 2_048,
            busy_timeout: Duration::from_secs(10),
            max_size: None,
            // 64 MiB of 4 KiB pages (P7 listens 0.06 s after a crash with a million jobs).
            wal_restart_pages: 16_384,
        }
    }
}

/// A read connection from the pool, lent for one closure.
pub struct ReadConn<'a> {
    conn: &'a mut SqliteConnection,
}

/// The database: a pool of readers and one group-committing writer.
#[derive(Clone)]
pub struct Store {
    readers: Pool<ConnectionManager<SqliteConnection>>,
    writer: Writer,
    checkpointer: Arc<checkpoint::Checkpointer>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when missing) and migrates the database, and starts the writer thread.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let path = &config.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Open {
                path: path.clone(),
                reason: format!("cannot create its folder: {error}"),
            })?;
        }
        let mut write_conn = connection::establish(path)?;
        connection::setup_writer(&mut write_conn, config.busy_timeout).map_err(|error| {
            StoreError::Open {
                path: path.clone(),
                reason: error.to_string(),
            }
        })?;
        write_conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|error| StoreError::Migration(error.to_string()))?;
        if let Some(bytes) = config.max_size {
            connection::limit_size(&mut write_conn, bytes).map_err(|error| StoreError::Open {
                path: path.clone(),
                reason: format!("cannot limit its size: {error}"),
            })?;
        }

        let readers = Pool::builder()
            .max_size(config.readers.max(1))
            .min_idle(Some(1))
            // The SELECT 1 r2d2 runs on every checkout by default costs more than most reads.
            .test_on_check_out(false)
            .connection_customizer(Box::new(connection::ReaderSetup {
                busy_timeout: config.busy_timeout.min(Duration::from_secs(5)),
            }))
            .build(ConnectionManager::<SqliteConnection>::new(path_str(path)?))
            .map_err(|error| StoreError::Open {
                path: path.clone(),
                reason: error.to_string(),
            })?;

        let restart_wanted = Arc::new(AtomicBool::new(false));
        let writer = Writer::start(
            write_conn,
            config.writer_queue,
            config.max_batch,
            WalRestart {
                wanted: Arc::clone(&restart_wanted),
                busy_timeout: config.busy_timeout,
            },
        )?;
        let checkpointer = Arc::new(checkpoint::Checkpointer::start(
            path,
            config.busy_timeout,
            config.wal_restart_pages,
            restart_wanted,
        )?);
        Ok(Store {
            readers,
            writer,
            checkpointer,
            path: path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled read connection. Blocks: call it from a blocking thread.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut ReadConn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.readers.get()?;
        f(&mut ReadConn { conn: &mut conn })
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Commits what is queued, stops the writer, and checkpoints the WAL into the database.
    pub fn shutdown(&self) {
        self.writer.shutdown();
        self.checkpointer.shutdown();
    }
}

fn path_str(path: &Path) -> Result<&str, StoreError> {
    path.to_str().ok_or_else(|| StoreError::Open {
        path: path.to_owned(),
        reason: "the path is not valid UTF-8".to_owned(),
    })
}
