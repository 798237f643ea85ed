//! Package files (`packages/<package_name>_<jobID>`) are written by this background writer
//! after the job's commit, not on the trigger's path: one file per job would otherwise cost each
//! trigger a file creation, a rename and (with flushing) two disk flushes, and serialise all
//! triggers on the folder's lock. The queue is in the database (`unwritten_package_files`), so
//! a file that a crash kept from being written is written at the next start.
//!
//! When the folder cannot be written, the writer says so ([`PackageFiles::healthy`]) and
//! triggers are refused with 503 until a retry succeeds; what was accepted before is written
//! then.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rpa_packages::PackageDir;
use tokio::sync::{Notify, watch};

use crate::db::Db;

/// Files written per round. Packages may be 32 KiB each: a round holds at most a few MiB.
const BATCH: i64 = 100;
/// Pause after a failure, and the longest sleep between rounds when nothing wakes the writer.
const RETRY: Duration = Duration::from_secs(1);
/// The writer's share of one core while it works through a backlog. Creating a file in a
/// folder of a million costs the file system tens of microseconds; at full speed the writer
/// would take a third of the server's CPU from the triggers it writes for. Files are derived
/// from the database and their queue is durable, so under a burst they may lag and catch up.
const DUTY: f64 = 0.25;

/// The handle the rest of the server holds.
#[derive(Debug, Default)]
pub(crate) struct PackageFiles {
    wake: Notify,
    /// The folder cannot be written ...
    failing: AtomicBool,
    /// ... because its disk is full.
    full: AtomicBool,
}

/// Why a round failed: the folder (triggers are refused until it works again), or the
/// database (the files are written; recording that waits for the database to come back).
enum Failure {
    Folder { full: bool, error: String },
    Database(String),
}

impl PackageFiles {
    /// New jobs were committed: their files are waiting.
    pub(crate) fn notify(&self) {
        self.wake.notify_one();
    }

    /// `None` while package files can be written; otherwise whether the folder's disk is full.
    pub(crate) fn failing(&self) -> Option<bool> {
        self.failing
            .load(Ordering::Acquire)
            .then(|| self.full.load(Ordering::Acquire))
    }
}

pub(crate) async fn run(
    files: Arc<PackageFiles>,
    db: Db,
    dir: PackageDir,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stopping = *stop.borrow();
        let started = std::time::Instant::now();
        let idle = match write_round(&db, &dir).await {
            Ok(written) => {
                if files.failing.swap(false, Ordering::AcqRel) {
                    log::info!("the packages folder is writable again");
                }
                written < BATCH as usize
            }
            Err(Failure::Folder { full, error }) => {
                files.full.store(full, Ordering::Release);
                if !files.failing.swap(true, Ordering::AcqRel) {
                    log::error!(
                        "cannot write package files: {error}; triggers are refused until this is fixed"
                    );
                }
                true
            }
            Err(Failure::Database(error)) => {
                log::warn!("package files: cannot read or update their queue: {error}; retrying");
                true
            }
        };
        if stopping {
            return;
        }
        if idle {
            tokio::select! {
                () = files.wake.notified() => {}
                () = tokio::time::sleep(RETRY) => {}
                _ = stop.changed() => {}
            }
        } else {
            // A full batch: more are waiting. Rest in proportion to the work, to keep the share.
            let rest = started.elapsed().mul_f64((1.0 - DUTY) / DUTY);
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// Writes the next batch of unwritten files. Returns how many were written.
async fn write_round(db: &Db, dir: &PackageDir) -> Result<usize, Failure> {
    let files = db
        .read(|conn| conn.unwritten_package_files(BATCH))
        .await
        .map_err(|error| Failure::Database(error.to_string()))?;
    if files.is_empty() {
        return Ok(0);
    }
    let dir = dir.clone();
    // Files are written in job order; the jobs before the first failure are marked done, so a
    // failure is retried (with everything after it) on the next round.
    let (done, count, failure) = tokio::task::spawn_blocking(move || {
        let results = dir.save_all(
            files
                .iter()
                .map(|f| (f.package_name.as_str(), f.job_id, f.package.as_str())),
        );
        let mut done = Vec::with_capacity(files.len());
        let mut count = 0;
        let mut failure = None;
        for (file, result) in files.iter().zip(results) {
            match result {
                Ok(_) => count += 1,
                // A name that is no longer safe cannot come from a validated trigger; it is
                // logged and passed over rather than retried forever.
                Err(rpa_packages::PackagesError::UnsafeName { .. }) => {
                    log::error!("job {}: unsafe package name, no file written", file.job_id);
                }
                Err(error) => {
                    failure = Some(Failure::Folder {
                        full: error.is_storage_full(),
                        error: error.to_string(),
                    });
                    break;
                }
            }
            done.push(file.job_id);
        }
        (done, count, failure)
    })
    .await
    .map_err(|error| Failure::Database(error.to_string()))?;
    if !done.is_empty() {
        db.write(move |tx| tx.mark_package_files_written(&done))
            .await
            .map_err(|error| Failure::Database(error.to_string()))?;
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(count),
    }
}
