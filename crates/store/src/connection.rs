//! Connection set-up. Every connection gets a busy timeout first (so the statements after it wait
//! instead of failing while another connection writes), then WAL and foreign keys. The writer
//! alone runs with `synchronous = FULL`: a commit is flushed before it is acknowledged.

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::CustomizeConnection;
use diesel::{Connection, RunQueryDsl, SqliteConnection};

use crate::StoreError;

pub(crate) fn establish(path: &Path) -> Result<SqliteConnection, StoreError> {
    let url = path.to_str().ok_or_else(|| StoreError::Open {
        path: path.to_owned(),
        reason: "the path is not valid UTF-8".to_owned(),
    })?;
    SqliteConnection::establish(url).map_err(|error| StoreError::Open {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

pub(crate) fn setup_writer(
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

/// Pool connections only read: `query_only` turns an accidental write through them into an
/// error instead of a second writer racing the real one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderSetup {
    pub(crate) busy_timeout: Duration,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for ReaderSetup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        let setup = |conn: &mut SqliteConnection| -> Result<(), diesel::result::Error> {
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {};",
                self.busy_timeout.as_millis()
            ))?;
            conn.batch_execute("PRAGMA foreign_keys = ON;")?;
            conn.batch_execute("PRAGMA query_only = ON;")?;
            // Readers look rows up by index; the OS caches the file for all of them. A small
            // cache per pooled connection keeps a burst of large packages from pinning
            // megabytes in each one.
            conn.batch_execute("PRAGMA cache_size = -512;")?;
            Ok(())
        };
        setup(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}
