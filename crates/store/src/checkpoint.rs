//! WAL checkpoints on a thread of their own.
//!
//! SQLite checkpoints automatically in whichever connection commits when the WAL passes 1,000
//! pages: that is the writer, and every request waiting for that commit then also waits for the
//! checkpoint's copying and flushing (measured: tens of milliseconds, the tail of every latency
//! figure). So the writer does not checkpoint; this thread does, passively (it never blocks the
//! writer nor waits for readers), a few times a second.
//!
//! A passive checkpoint alone does not bound the WAL under a writer that never pauses: SQLite
//! starts the WAL over only when a write begins with every frame already copied back, and a
//! busy writer always adds frames while the copy runs. The WAL then grows for as long as the
//! load lasts (283 MB for 50 MB of data in a store test), and a restart after a crash reads all
//! of it back before the port opens (6 s with a million pending jobs, P7). So once the WAL passes
//! `restart_after` pages, this thread asks the writer, between two batches, for a RESTART
//! checkpoint ([`restart`]): with no other writer to wait for, it copies the frames added since
//! the last passive checkpoint (a quarter second's worth) and waits, briefly, for readers to
//! leave the WAL; the writer's next batch then writes the WAL from its start. A reader that
//! does not leave in time makes it give up until the next request.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{RunQueryDsl, SqliteConnection};

use crate::{OpenError, StoreError};

const EVERY: Duration = Duration::from_millis(250);

/// The longest a RESTART checkpoint waits for readers to leave the WAL (the writer's queue
/// waits meanwhile).
const RESTART_WAIT: Duration = Duration::from_millis(20);

/// What `PRAGMA wal_checkpoint` answers: whether it was blocked, the frames in the WAL, and how
/// many of them are copied into the database.
#[derive(Debug, diesel::QueryableByName)]
struct Progress {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    checkpointed: i32,
}

#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// `restart_after`: WAL pages past which `restart_wanted` asks the writer to start the WAL
    /// over (see the module doc).
    pub(crate) fn start(
        path: &Path,
        busy_timeout: Duration,
        restart_after: u32,
        restart_wanted: Arc<AtomicBool>,
    ) -> Result<Checkpointer, StoreError> {
        let open_error = |source| StoreError::Open {
            location: path.display().to_string(),
            source,
        };
        let mut conn = crate::connection::establish_sqlite(path).map_err(open_error)?;
        crate::connection::setup_sqlite_writer(&mut conn, busy_timeout)
            .map_err(|error| open_error(OpenError::Setup(error)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("db-checkpoint".to_owned())
            .spawn(move || run(conn, &stopping, restart_after, &restart_wanted))
            .map_err(|source| StoreError::Thread {
                thread: "checkpoint",
                source,
            })?;
        Ok(Checkpointer {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread after a last checkpoint that also empties the WAL.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        crate::writer::join(&self.thread, "checkpoint");
    }
}

fn run(
    mut conn: SqliteConnection,
    stop: &AtomicBool,
    restart_after: u32,
    restart_wanted: &AtomicBool,
) {
    let restart_after = i32::try_from(restart_after).unwrap_or(i32::MAX);
    let mut failing = false;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(EVERY);
        match checkpoint(&mut conn, "PASSIVE") {
            Ok(progress) => {
                failing = false;
                if progress.log >= restart_after {
                    restart_wanted.store(true, Ordering::Release);
                }
            }
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

fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> Result<Progress, diesel::result::Error> {
    diesel::sql_query(format!("PRAGMA wal_checkpoint({mode})")).get_result(conn)
}

/// Run by the writer between batches when asked: a RESTART checkpoint that waits for readers
/// at most [`RESTART_WAIT`], then the connection's usual busy timeout again.
pub(crate) fn restart(conn: &mut SqliteConnection, busy_timeout: Duration) {
    let mut run = || -> Result<Progress, diesel::result::Error> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {};",
            RESTART_WAIT.as_millis()
        ))?;
        let outcome = checkpoint(conn, "RESTART");
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {};",
            busy_timeout.as_millis()
        ))?;
        outcome
    };
    match run() {
        Ok(progress) => log::debug!(
            "WAL restart checkpoint: {} frames, {} copied, {}",
            progress.log,
            progress.checkpointed,
            if progress.busy == 0 {
                "started over"
            } else {
                "readers in the way, asked again later"
            }
        ),
        Err(error) => log::warn!("WAL restart checkpoint failed: {error}"),
    }
}
