//! The one bridge from async code to the synchronous store: reads run on tokio's blocking pool,
//! writes go to the store's group-commit writer and are awaited through a oneshot channel, so no
//! async worker ever blocks on the database.

use std::fmt;

use rpa_store::{ReadConn, Store, StoreError, WriteTx, WriterStatsSnapshot};
use tokio::sync::oneshot;

#[derive(Clone, Debug)]
pub(crate) struct Db {
    store: Store,
}

impl Db {
    pub(crate) fn new(store: Store) -> Db {
        Db { store }
    }

    /// The store itself, for start-up and shutdown only: everything else goes through the
    /// methods below.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Whether other instances share the database (PostgreSQL).
    pub(crate) fn shared(&self) -> bool {
        self.store.shared()
    }

    /// The group-commit writer's counters, for `GET /metrics`.
    pub(crate) fn writer_stats(&self) -> WriterStatsSnapshot {
        self.store.writer().stats()
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut ReadConn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.read(f))
            .await
            .map_err(|error| StoreError::Failed(format!("a database read panicked: {error}")))?
    }

    /// Resolves once the write is committed (or failed). `op` is `Fn` because the writer runs
    /// it a second time when another write of its batch failed: it must only touch the database.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.store.writer().submit(op, move |outcome| {
            // The requester may have given up (a client that hung up); the write stands anyway.
            let _ = reply.send(outcome);
        })?;
        result.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Queues a write without waiting for it: `done` gets what it returned, with `subject`
    /// back, on the writer's thread (so it must be quick). A write that cannot be queued, or
    /// fails, is logged instead as `{subject}: {failure}: {error}`.
    pub(crate) fn submit<T, F, S, D>(&self, subject: S, failure: &'static str, op: F, done: D)
    where
        T: Send + 'static,
        F: Fn(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
        S: fmt::Display + Clone + Send + 'static,
        D: FnOnce(T, S) + Send + 'static,
    {
        // The writer drops what it could not queue: the subject is kept to say so.
        let unqueued = subject.clone();
        let queued = self
            .store
            .writer()
            .submit(op, move |outcome| match outcome {
                Ok(value) => done(value, subject),
                Err(error) => log::error!("{subject}: {failure}: {error}"),
            });
        if let Err(error) = queued {
            log::error!("{unqueued}: {failure}: {error}");
        }
    }

    /// Queues a write whose outcome only needs logging.
    pub(crate) fn write_detached<T, F>(&self, what: &'static str, op: F)
    where
        T: Send + 'static,
        F: Fn(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let submitted = self.store.writer().submit(op, move |outcome| {
            if let Err(error) = outcome {
                log::error!("could not record {what}: {error}");
            }
        });
        if let Err(error) = submitted {
            log::error!("could not record {what}: {error}");
        }
    }
}
