//! The store's errors. Each keeps its cause as its [`source`](std::error::Error::source), typed;
//! each message also ends with the cause's, because the server shows a store error on one line
//! by its `Display` alone (`socket-server: --database: cannot open the database at X: reason`).

use std::error::Error as StdError;
use std::sync::Arc;

/// Why a store operation failed. Domain outcomes (an unknown robot, a job in the wrong state) are
/// not errors: the operations return them as values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another connection held the write lock past the busy timeout. Worth retrying later.
    #[error("the database is busy (another connection holds the write lock)")]
    Busy,
    /// The disk or the database's size limit is full. Nothing of the failed transaction was kept.
    #[error("the database or its disk is full")]
    Full,
    /// The database file or its folder cannot be written (permissions, read-only mount). Shared,
    /// so that every write of a batch whose commit failed so gets it.
    #[error("the database cannot be written: {0}")]
    ReadOnly(#[source] Arc<diesel::result::Error>),
    /// More write requests are waiting than the writer queue holds.
    #[error("the database writer is overloaded")]
    Overloaded,
    /// The writer thread has stopped (the store is shutting down).
    #[error("the database writer has stopped")]
    WriterStopped,
    #[error("cannot open the database at {location}: {source}")]
    Open {
        /// The file, or the URL without its password.
        location: String,
        #[source]
        source: OpenError,
    },
    /// The database server cannot be reached, or dropped the connection (PostgreSQL). Shared,
    /// like [`StoreError::ReadOnly`].
    #[error("the database server cannot be reached: {0}")]
    Unavailable(#[source] Arc<Unreachable>),
    /// diesel_migrations reports its failures as boxed errors of its own.
    #[error("cannot migrate the database: {0}")]
    Migration(#[source] Box<dyn StdError + Send + Sync>),
    #[error("no database connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// One of the store's threads (writer, checkpoints, listener) could not be started.
    #[error("cannot start the database {thread} thread: {source}")]
    Thread {
        thread: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(#[source] Corruption),
    #[error("database error: {0}")]
    Database(#[source] diesel::result::Error),
    /// A statement failed inside the batch's transaction and went unnoticed until its end
    /// (PostgreSQL aborts the whole transaction then): it was rolled back, not committed.
    #[error("a failed statement aborted the transaction")]
    Aborted,
    /// The commit of the write's batch failed: the one failure, shared by every write of the
    /// batch. (Busy, full, read-only and unavailable keep their own variants.)
    #[error("database write failed: {0}")]
    BatchFailed(#[source] Arc<StoreError>),
    /// A failure of the caller's own, inside a read or a write, reported as the store's.
    #[error("database write failed: {0}")]
    Failed(String),
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create its folder: {0}")]
    CreateFolder(#[source] std::io::Error),
    #[error("the path is not valid UTF-8")]
    PathNotUtf8,
    #[error("{0}")]
    Connect(#[source] diesel::ConnectionError),
    /// The connection's settings (pragmas, session settings) were refused.
    #[error("{0}")]
    Setup(#[source] diesel::result::Error),
    #[error("cannot limit its size: {0}")]
    LimitSize(#[source] diesel::result::Error),
    /// The pool of read connections could not be filled.
    #[error("{0}")]
    Readers(#[source] diesel::r2d2::PoolError),
    #[error("this build has no PostgreSQL support (build with `--features postgres`)")]
    NoPostgres,
}

/// Why the database server is out of reach.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// A statement found the connection closed, or ended by the server.
    #[error("{0}")]
    Lost(#[source] diesel::result::Error),
    /// A new connection was refused.
    #[error("{0}")]
    Connect(#[source] diesel::ConnectionError),
    /// The writer could not connect again after it lost its connection.
    #[error("cannot open the database at {location}: {source}")]
    Reconnect {
        location: String,
        #[source]
        source: OpenError,
    },
}

/// What is wrong with stored data.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    /// A column holds a value this build cannot read (an unknown status, a NULL where none
    /// belongs).
    #[error("{source}{}", column.as_ref().map(|c| format!(" (column {c})")).unwrap_or_default())]
    Unreadable {
        column: Option<String>,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A row written in this transaction could not be read back.
    #[error("{what} {id} vanished")]
    Vanished { what: &'static str, id: i64 },
}

/// A stored value this build does not know, e.g. a job status.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {value}")]
pub struct UnknownValue {
    what: &'static str,
    value: String,
}

impl UnknownValue {
    pub(crate) fn new(what: &'static str, value: String) -> UnknownValue {
        UnknownValue { what, value }
    }
}

impl StoreError {
    /// True when the failure is temporary and the same request may succeed later (HTTP 503).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Busy
                | StoreError::Full
                | StoreError::ReadOnly(_)
                | StoreError::Overloaded
                | StoreError::Pool(_)
                | StoreError::Thread { .. }
                | StoreError::Unavailable(_)
        )
    }

    pub(crate) fn vanished(what: &'static str, id: i64) -> StoreError {
        StoreError::Corrupt(Corruption::Vanished { what, id })
    }

    /// An event's snapshot of its subject that cannot be written or read back.
    pub(crate) fn snapshot(error: serde_json::Error) -> StoreError {
        StoreError::Corrupt(Corruption::Unreadable {
            column: Some("events.data".to_owned()),
            source: Box::new(error),
        })
    }

    /// The batch's commit failure again, for one of its writes: the kinds the server tells
    /// apart keep their variant, the others are shared as [`StoreError::BatchFailed`].
    pub(crate) fn replicate(failure: &Arc<StoreError>) -> StoreError {
        match &**failure {
            StoreError::Busy => StoreError::Busy,
            StoreError::Full => StoreError::Full,
            StoreError::ReadOnly(cause) => StoreError::ReadOnly(Arc::clone(cause)),
            StoreError::Overloaded => StoreError::Overloaded,
            StoreError::WriterStopped => StoreError::WriterStopped,
            StoreError::Unavailable(cause) => StoreError::Unavailable(Arc::clone(cause)),
            _ => StoreError::BatchFailed(Arc::clone(failure)),
        }
    }
}

impl From<Unreachable> for StoreError {
    fn from(cause: Unreachable) -> Self {
        StoreError::Unavailable(Arc::new(cause))
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, DeserializeFieldError, Error};
        let error = match error {
            Error::DeserializationError(source) => {
                // diesel names the column, but its message leaves the cause out: keep both.
                let (column, source) = match source.downcast::<DeserializeFieldError>() {
                    Ok(field) => (field.field_name, field.error),
                    Err(source) => (None, source),
                };
                return StoreError::Corrupt(Corruption::Unreadable { column, source });
            }
            other => other,
        };
        let message = match &error {
            Error::DatabaseError(_, info) => info.message().to_ascii_lowercase(),
            _ => return StoreError::Database(error),
        };
        if let Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) = &error {
            return Unreachable::Lost(error).into();
        }
        // PostgreSQL: a lock held elsewhere past `lock_timeout`, a serialization conflict, or a
        // full disk. SQLSTATEs would be exact, but diesel passes on only the message.
        if let Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) = &error {
            return StoreError::Busy;
        }
        if message.contains("server closed the connection")
            || message.contains("terminating connection")
            || message.contains("no connection to the server")
            || message.contains("connection to server")
        {
            return Unreachable::Lost(error).into();
        }
        // SQLite reports busy, full and read-only conditions as generic database errors; the
        // message is the only stable distinction diesel passes on.
        if message.contains("database is locked")
            || message.contains("database is busy")
            || message.contains("lock timeout")
            || message.contains("deadlock detected")
        {
            return StoreError::Busy;
        }
        if message.contains("database or disk is full")
            || message.contains("no space left on device")
        {
            return StoreError::Full;
        }
        if message.contains("readonly")
            || message.contains("read-only")
            || message.contains("disk i/o error")
        {
            return StoreError::ReadOnly(Arc::new(error));
        }
        StoreError::Database(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_commit_is_shared_by_every_write_of_its_batch_and_keeps_its_kind() {
        let failure = Arc::new(StoreError::Database(diesel::result::Error::NotFound));
        let (first, second) = (
            StoreError::replicate(&failure),
            StoreError::replicate(&failure),
        );
        for replica in [&first, &second] {
            let StoreError::BatchFailed(shared) = replica else {
                panic!("{replica:?}");
            };
            assert!(Arc::ptr_eq(shared, &failure));
            assert_eq!(
                replica.to_string(),
                "database write failed: database error: Record not found"
            );
            assert!(!replica.is_transient());
        }

        let lost = Arc::new(StoreError::from(Unreachable::Lost(
            diesel::result::Error::BrokenTransactionManager,
        )));
        let replica = StoreError::replicate(&lost);
        assert!(
            matches!((&replica, &*lost), (StoreError::Unavailable(a), StoreError::Unavailable(b)) if Arc::ptr_eq(a, b)),
            "{replica:?}"
        );
        assert!(replica.is_transient());
        assert!(matches!(
            StoreError::replicate(&Arc::new(StoreError::Busy)),
            StoreError::Busy
        ));
    }
}
