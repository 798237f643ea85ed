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
    /// The database file or its folder cannot be written (permissions, read-only mount).
    #[error("the database cannot be written: {0}")]
    ReadOnly(String),
    /// More write requests are waiting than the writer queue holds.
    #[error("the database writer is overloaded")]
    Overloaded,
    /// The writer thread has stopped (the store is shutting down).
    #[error("the database writer has stopped")]
    WriterStopped,
    #[error("cannot open the database at {location}: {reason}")]
    Open { location: String, reason: String },
    /// The database server cannot be reached, or dropped the connection (PostgreSQL).
    #[error("the database server cannot be reached: {0}")]
    Unavailable(String),
    #[error("cannot migrate the database: {0}")]
    Migration(String),
    #[error("no database connection available: {0}")]
    Pool(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(diesel::result::Error),
    /// A failure passed on to every write of a batch whose commit failed.
    #[error("database write failed: {0}")]
    Failed(String),
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
                | StoreError::Unavailable(_)
        )
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        if let Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info) = &error {
            return StoreError::Unavailable(info.message().to_owned());
        }
        // PostgreSQL: a lock held elsewhere past `lock_timeout`, a serialization conflict, or a
        // full disk. SQLSTATEs would be exact, but diesel passes on only the message.
        if let Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) = &error {
            return StoreError::Busy;
        }
        if let Error::DatabaseError(_, info) = &error {
            let message = info.message().to_ascii_lowercase();
            if message.contains("server closed the connection")
                || message.contains("terminating connection")
                || message.contains("no connection to the server")
                || message.contains("connection to server")
            {
                return StoreError::Unavailable(info.message().to_owned());
            }
        }
        // SQLite reports busy, full and read-only conditions as generic database errors; the
        // message is the only stable distinction diesel passes on.
        if let Error::DatabaseError(_, info) = &error {
            let message = info.message().to_ascii_lowercase();
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
            if message.contains("readonly") || message.contains("read-only") {
                return StoreError::ReadOnly(info.message().to_owned());
            }
            if message.contains("disk i/o error") {
                return StoreError::ReadOnly(info.message().to_owned());
            }
        }
        StoreError::Database(error)
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        StoreError::Pool(error.to_string())
    }
}
