//! Connections and their set-up, per backend.
//!
//! Every query of this crate is written once, against [`DbConnection`], Diesel's
//! `MultiConnection` over the backends this build has (SQLite always, PostgreSQL with the
//! `postgres` feature). Only set-up differs:
//!
//! - SQLite: every connection gets a busy timeout first (so the statements after it wait instead
//!   of failing while another connection writes), then WAL and foreign keys. The writer alone
//!   runs with `synchronous = FULL`: a commit is flushed before it is acknowledged.
//! - PostgreSQL: the writer runs with `synchronous_commit = on` (a commit is flushed to the
//!   server's WAL before it is acknowledged, whatever the server's default), readers in
//!   read-only transactions.

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::CustomizeConnection;
use diesel::{Connection, RunQueryDsl, SqliteConnection};

use crate::Location;
use crate::error::OpenError;

/// A connection to whichever backend the store was opened on. The SQLite variant comes last:
/// establishing by URL tries the variants in order, and SQLite takes any text as a file name.
#[derive(diesel::MultiConnection)]
pub(crate) enum DbConnection {
    #[cfg(feature = "postgres")]
    Pg(diesel::PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$c` bound to the backend's own connection: for the few statements Diesel
/// builds only per backend (multi-row inserts), written once and compiled for each.
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::DbConnection::Sqlite($c) => $body,
            #[cfg(feature = "postgres")]
            $crate::connection::DbConnection::Pg($c) => $body,
        }
    };
}
pub(crate) use per_backend;

/// Runs `$body` with `$q` bound to `$query` made to lock the rows it reads where another
/// instance's writer may be in the way (PostgreSQL: `FOR UPDATE`, or `FOR UPDATE SKIP LOCKED`
/// with `skip_locked`, or either as `skip_locked = EXPR` says), and to `$query` as it is on
/// SQLite, whose one writer locks everything. `$query` is expanded once per backend: a query
/// typed by its backend (`.select(X::as_select())`) is written inline, not bound beforehand.
macro_rules! locked {
    ($conn:expr, $query:expr, skip_locked = $skip:expr, |$q:ident, $c:ident| $body:expr) => {
        match $conn {
            $crate::connection::DbConnection::Sqlite($c) => {
                let _ = $skip;
                let $q = $query;
                $body
            }
            #[cfg(feature = "postgres")]
            $crate::connection::DbConnection::Pg($c) => {
                if $skip {
                    let $q = $query.for_update().skip_locked();
                    $body
                } else {
                    let $q = $query.for_update();
                    $body
                }
            }
        }
    };
    ($conn:expr, $query:expr, |$q:ident, $c:ident| $body:expr) => {
        $crate::connection::locked!($conn, $query, skip_locked = false, |$q, $c| $body)
    };
    ($conn:expr, $query:expr, skip_locked, |$q:ident, $c:ident| $body:expr) => {
        $crate::connection::locked!($conn, $query, skip_locked = true, |$q, $c| $body)
    };
}
pub(crate) use locked;

impl DbConnection {
    /// True on a backend several server instances may share (PostgreSQL): only there do rows
    /// need locking against another writer, and holders of robots checking.
    pub(crate) fn shared(&self) -> bool {
        !matches!(self, DbConnection::Sqlite(_))
    }

    /// The SQLite connection, or None on another backend (for what only SQLite has: pragmas,
    /// checkpoints).
    pub(crate) fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match self {
            DbConnection::Sqlite(conn) => Some(conn),
            #[cfg(feature = "postgres")]
            DbConnection::Pg(_) => None,
        }
    }
}

pub(crate) fn establish_sqlite(path: &Path) -> Result<SqliteConnection, OpenError> {
    let url = path.to_str().ok_or(OpenError::PathNotUtf8)?;
    SqliteConnection::establish(url).map_err(OpenError::Connect)
}

/// Opens the writer's connection and sets it up.
pub(crate) fn establish_writer(
    location: &Location,
    busy_timeout: Duration,
) -> Result<DbConnection, OpenError> {
    match location {
        Location::Sqlite(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(OpenError::CreateFolder)?;
            }
            let mut conn = establish_sqlite(path)?;
            setup_sqlite_writer(&mut conn, busy_timeout).map_err(OpenError::Setup)?;
            Ok(DbConnection::Sqlite(conn))
        }
        #[cfg(feature = "postgres")]
        Location::Postgres(url) => {
            let mut conn = diesel::PgConnection::establish(url).map_err(OpenError::Connect)?;
            conn.batch_execute(&format!(
                "SET synchronous_commit = on; SET lock_timeout = {}; \
                 SET application_name = 'rpa-socket-server writer';",
                busy_timeout.as_millis()
            ))
            .map_err(OpenError::Setup)?;
            Ok(DbConnection::Pg(conn))
        }
        #[cfg(not(feature = "postgres"))]
        Location::Postgres(_) => Err(OpenError::NoPostgres),
    }
}

pub(crate) fn setup_sqlite_writer(
    conn: &mut SqliteConnection,
    busy_timeout: Duration,
) -> Result<(), diesel::result::Error> {
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};",
        busy_timeout.as_millis()
    ))?;
    conn.batch_execute("PRAGMA journal_mode = WAL;")?;
    conn.batch_execute("PRAGMA synchronous = FULL;")?;
    conn.batch_execute("PRAGMA foreign_keys = ON;")?;
    // The checkpoint thread does this instead (see checkpoint.rs).
    conn.batch_execute("PRAGMA wal_autocheckpoint = 0;")?;
    // When the WAL starts over, its file is cut back to this size (64 MiB), so a burst does not
    // leave a huge file behind.
    conn.batch_execute("PRAGMA journal_size_limit = 67108864;")?;
    // Every write runs in a savepoint; its statement journal would otherwise be a new temporary
    // file each time (a file creation per request, measured as a seventh of the writer's time).
    conn.batch_execute("PRAGMA temp_store = MEMORY;")?;
    Ok(())
}

/// Caps the database file (SQLite's `max_page_count`, per connection: only the writer grows the
/// file). A write that needs more fails as full and rolls back; the cap never shrinks a file
/// already larger.
pub(crate) fn limit_size(
    conn: &mut SqliteConnection,
    bytes: u64,
) -> Result<(), diesel::result::Error> {
    #[derive(diesel::QueryableByName)]
    struct PageSize {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        page_size: i64,
    }
    let page: PageSize = diesel::sql_query("PRAGMA page_size").get_result(conn)?;
    let pages = bytes / u64::try_from(page.page_size.max(512)).unwrap_or(4096);
    conn.batch_execute(&format!("PRAGMA max_page_count = {};", pages.max(1)))?;
    Ok(())
}

/// Pool connections only read: `query_only` (SQLite) or read-only transactions (PostgreSQL)
/// turn an accidental write through them into an error instead of a second writer racing the
/// real one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderSetup {
    pub(crate) busy_timeout: Duration,
}

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for ReaderSetup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        let setup = |conn: &mut DbConnection| -> Result<(), diesel::result::Error> {
            match conn {
                DbConnection::Sqlite(conn) => {
                    conn.batch_execute(&format!(
                        "PRAGMA busy_timeout = {};",
                        self.busy_timeout.as_millis()
                    ))?;
                    conn.batch_execute("PRAGMA foreign_keys = ON;")?;
                    conn.batch_execute("PRAGMA query_only = ON;")?;
                    // Readers look rows up by index; the OS caches the file for all of them. A
                    // small cache per pooled connection keeps a burst of large packages from
                    // pinning megabytes in each one.
                    conn.batch_execute("PRAGMA cache_size = -512;")?;
                }
                #[cfg(feature = "postgres")]
                DbConnection::Pg(conn) => {
                    conn.batch_execute(
                        "SET default_transaction_read_only = on; \
                         SET application_name = 'rpa-socket-server reader';",
                    )?;
                }
            }
            Ok(())
        };
        setup(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}
