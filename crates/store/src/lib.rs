#![doc = include_str!("../README.md")]

mod checkpoint;
mod connection;
mod credentials;
mod deferred;
mod error;
mod events;
mod idempotency;
mod instances;
mod jobs;
mod notify;
mod package_files;
#[cfg(feature = "postgres")]
mod pg_insert;
mod pools;
mod retention;
mod robots;
mod schedules;
mod schema;
mod sending;
mod status;
mod time;
mod transitions;
mod webhooks;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use connection::DbConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use writer::Upkeep;

pub use credentials::{Admission, CreateCredential, CredentialRecord, NewCredential};
pub use error::{Corruption, OpenError, StoreError, UnknownValue, Unreachable};
pub use events::{EventFilter, EventRecord, EventType, SubjectState, TypePattern};
pub use idempotency::{Created, Prior};
pub use instances::{InstanceRecord, Reaped};
pub use jobs::{
    DueJob, IdempotencyKey, InsertJob, JobEventRecord, JobFilter, JobRecord, NewJob, RetryJob,
};
pub use notify::{HandedOff, Listener, Notice};
pub use package_files::PackageFile;
pub use pools::{PoolMember, PoolSummary, RobotWithPools};
pub use retention::PurgedJob;
pub use robots::{PutRobot, RobotFilter, RobotMessageRecord, RobotRecord, RobotRegistration};
pub use schedules::{
    InsertSchedule, NewSchedule, PauseOutcome, ScheduleEventRecord, ScheduleFilter, ScheduleRecord,
    StopOutcome,
};
pub use sending::{Claimed, DueOutcome, Reach, RobotClaim, WAKE_LIMIT};
pub use status::{Delivery, JobStatus};
pub use transitions::{AckOutcome, ChangeOutcome, DeclineOutcome, DeliveryPolicy, ReportOutcome};
pub use webhooks::{
    ClaimedWebhook, CreateWebhook, DELIVERIES_KEPT, DeliveryOutcome, DeliveryRecord, EnableWebhook,
    Missed, NewDelivery, NewWebhook, OwedEvent, ProgressOutcome, WebhookFilter, WebhookFormat,
    WebhookProgress, WebhookRecord,
};
pub use writer::{
    BATCH_BUCKETS, LATENCY_BUCKETS_MICROS, WriteTx, Writer, WriterStats, WriterStatsSnapshot,
};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Where the database is.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// An embedded SQLite database file; its folder is created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL server, as a `postgres://` URL (needs the `postgres` feature).
    Postgres(String),
}

impl Location {
    /// True when this build can open this kind of database.
    pub fn supported(&self) -> bool {
        match self {
            Location::Sqlite(_) => true,
            Location::Postgres(_) => cfg!(feature = "postgres"),
        }
    }
}

/// The file's path, or the URL without its password: fit for logs and error messages.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Location::Postgres(_) => f.debug_tuple("Postgres").field(&self.to_string()).finish(),
        }
    }
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`.
fn redact_password(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => authority.to_owned(),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => before_query.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// How to open the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub location: Location,
    /// Pooled read connections.
    pub readers: u32,
    /// Write requests that may wait for the writer before new ones are refused as overloaded.
    pub writer_queue: usize,
    /// Write requests committed together at most.
    pub max_batch: usize,
    /// How long a write waits for a lock held by another connection before failing as busy.
    pub busy_timeout: Duration,
    /// The largest the database file may grow, in bytes; beyond it writes fail as full. SQLite
    /// only: a PostgreSQL server's space is its administrator's.
    pub max_size: Option<u64>,
    /// WAL pages past which the writer is asked to start the WAL over (see checkpoint.rs):
    /// bounds the WAL file and what a restart after a crash reads back. SQLite only.
    pub wal_restart_pages: u32,
    /// This server instance's id: recorded with the robots it holds and the sendings it
    /// claims. Unique per process start; several instances share a PostgreSQL database.
    pub instance: String,
}

impl StoreConfig {
    /// An embedded SQLite database in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig::at(Location::Sqlite(path.into()))
    }

    pub fn at(location: Location) -> StoreConfig {
        StoreConfig {
            location,
            readers: 8,
            writer_queue: 65_536,
            max_batch: 2_048,
            busy_timeout: Duration::from_secs(10),
            max_size: None,
            // 64 MiB of 4 KiB pages (P7 listens 0.06 s after a crash with a million jobs).
            wal_restart_pages: 16_384,
            instance: fresh_instance_id(),
        }
    }
}

/// An id for a process that was given none: the process id and the start time, unique enough
/// for tests and tools (the server gives a UUID).
fn fresh_instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

/// A read connection from the pool, lent for one closure.
pub struct ReadConn<'a> {
    conn: &'a mut DbConnection,
    /// This instance's id.
    instance: &'a str,
}

/// The database: a pool of readers and one group-committing writer.
#[derive(Clone)]
pub struct Store {
    readers: Pool<ConnectionManager<DbConnection>>,
    writer: Writer,
    /// SQLite only: PostgreSQL checkpoints by itself.
    checkpointer: Option<Arc<checkpoint::Checkpointer>>,
    location: Location,
    instance: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when missing) and migrates the database, and starts the writer thread.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let location = &config.location;
        let open_error = |source: OpenError| StoreError::Open {
            location: location.to_string(),
            source,
        };
        let mut write_conn =
            connection::establish_writer(location, config.busy_timeout).map_err(open_error)?;
        migrate(&mut write_conn)?;
        if let Some(bytes) = config.max_size
            && let Some(conn) = write_conn.sqlite()
        {
            connection::limit_size(conn, bytes)
                .map_err(|error| open_error(OpenError::LimitSize(error)))?;
        }

        let url = match location {
            Location::Sqlite(path) => path
                .to_str()
                .ok_or_else(|| open_error(OpenError::PathNotUtf8))?
                .to_owned(),
            Location::Postgres(url) => url.clone(),
        };
        let readers = Pool::builder()
            .max_size(config.readers.max(1))
            .min_idle(Some(1))
            // The SELECT 1 r2d2 runs on every checkout by default costs more than most reads.
            .test_on_check_out(false)
            .connection_customizer(Box::new(connection::ReaderSetup {
                busy_timeout: config.busy_timeout.min(Duration::from_secs(5)),
            }))
            .build(ConnectionManager::<DbConnection>::new(url))
            .map_err(|error| open_error(OpenError::Readers(error)))?;

        let restart_wanted = Arc::new(AtomicBool::new(false));
        let writer = Writer::start(
            write_conn,
            config.writer_queue,
            config.max_batch,
            Upkeep {
                wal_restart: Arc::clone(&restart_wanted),
                busy_timeout: config.busy_timeout,
                location: location.clone(),
            },
            Arc::from(config.instance.as_str()),
        )?;
        let checkpointer = match location {
            Location::Sqlite(path) => Some(Arc::new(checkpoint::Checkpointer::start(
                path,
                config.busy_timeout,
                config.wal_restart_pages,
                restart_wanted,
            )?)),
            Location::Postgres(_) => None,
        };
        Ok(Store {
            readers,
            writer,
            checkpointer,
            location: location.clone(),
            instance: Arc::from(config.instance.as_str()),
        })
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Starts listening for jobs other instances hand to this one and for the events they
    /// commit (see notify.rs); `deliver` runs on the listener's thread and must only pass them
    /// on. None on SQLite.
    pub fn listen(
        &self,
        deliver: impl Fn(Notice) + Send + 'static,
    ) -> Result<Option<Listener>, StoreError> {
        notify::listen(&self.location, &self.instance, Box::new(deliver))
    }

    /// True when several server instances may share this database (PostgreSQL); SQLite serves
    /// one.
    pub fn shared(&self) -> bool {
        matches!(self.location, Location::Postgres(_))
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Runs `f` on a pooled read connection. Blocks: call it from a blocking thread.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut ReadConn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.readers.get()?;
        f(&mut ReadConn {
            conn: &mut conn,
            instance: &self.instance,
        })
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Commits what is queued, stops the writer, and checkpoints the WAL into the database.
    pub fn shutdown(&self) {
        self.writer.shutdown();
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.shutdown();
        }
    }
}

fn migrate(conn: &mut DbConnection) -> Result<(), StoreError> {
    let outcome = match conn {
        DbConnection::Sqlite(conn) => conn.run_pending_migrations(SQLITE_MIGRATIONS).map(drop),
        #[cfg(feature = "postgres")]
        DbConnection::Pg(conn) => {
            // Instances that start together must not migrate at the same time: the first takes
            // the lock and migrates, the others wait for it and find nothing left to do.
            use diesel::connection::SimpleConnection;
            const MIGRATION_LOCK: i64 = 0x7270_615f_6d69_6772; // "rpa_migr"
            conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .map_err(|error| StoreError::Migration(error.into()))?;
            let outcome = conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(drop);
            let unlocked =
                conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
            outcome.and_then(|()| unlocked.map_err(Into::into))
        }
    };
    outcome.map_err(StoreError::Migration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_shown_without_its_password() {
        let shown = |url: &str| Location::Postgres(url.to_owned()).to_string();
        assert_eq!(
            shown("postgres://rpa:s3cr:et@db.example:5432/rpa?sslmode=require"),
            "postgres://rpa:***@db.example:5432/rpa?sslmode=require"
        );
        assert_eq!(
            shown("postgres://rpa@db/rpa?password=s3cret&sslmode=require"),
            "postgres://rpa@db/rpa?password=***&sslmode=require"
        );
        assert_eq!(shown("postgresql://db/rpa"), "postgresql://db/rpa");
        assert!(!format!("{:?}", Location::Postgres("postgres://a:pw@h/d".into())).contains("pw"));
        assert_eq!(
            Location::Sqlite("data/x.db".into()).to_string(),
            "data/x.db"
        );
    }
}
