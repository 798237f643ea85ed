//! WAL checkpoints on a thread of their own.
//!
//! SQLite checkpoints automatically in whichever connection commits when the WAL passes 1,000
//! pages: that is the writer, and every request waiting for that commit then also waits for the
//! checkpoint's copying and flushing (measured: tens of milliseconds, the tail of every latency
//! figure). So the writer does not checkpoint; this thread does, passively (it never blocks the
//! writer nor waits for readers), a few times a second.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::SqliteConnection;
use diesel::connection::SimpleConnection;

use crate::StoreError;

const EVERY: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path, busy_timeout: Duration) -> Result<Checkpointer, StoreError> {
        let mut conn = crate::connection::establish(path)?;
        crate::connection::setup_writer(&mut conn, busy_timeout).map_err(|error| {
            StoreError::Open {
                path: path.to_owned(),
                reason: error.to_string(),
            }
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("db-checkpoint".to_owned())
            .spawn(move || run(conn, &stopping))
            .map_err(|error| {
                StoreError::Pool(format!("cannot start the checkpoint thread: {error}"))
            })?;
        Ok(Checkpointer {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread after a last checkpoint that also empties the WAL.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            log::error!("the database checkpoint thread panicked");
        }
    }
}

fn run(mut conn: SqliteConnection, stop: &AtomicBool) {
    let mut failing = false;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(EVERY);
        match conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                log::warn!("database checkpoint failed: {error}; retrying");
            }
            Err(_) => {}
        }
    }
    if let Err(error) = conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);") {
        log::warn!("final database checkpoint failed: {error}");
    }
}
