//! Retention: old daily log files, the event stream's old events, and (when configured) finished
//! jobs, their events, old robot messages and schedule events, purged in small batches so the
//! writer keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeDelta, Utc};
use tokio::sync::watch;

use crate::app::App;

/// Rows deleted per write.
const BATCH: i64 = 500;
/// Idempotency keys are promised for 24 h; they are kept twice that.
const KEY_RETENTION: TimeDelta = TimeDelta::hours(48);
/// The first pass waits a little, so it does not compete with start-up.
const FIRST_PASS: Duration = Duration::from_secs(5);

pub(crate) async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut wait = FIRST_PASS;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = app.config.retention_interval;
        let dir = app.config.log_dir.clone();
        let days = app.config.log_retention_days;
        if days > 0 {
            let removed = tokio::task::spawn_blocking(move || purge_logs(&dir, days)).await;
            if let Ok(removed) = removed
                && removed > 0
            {
                log::info!("retention: {removed} log files older than {days} days deleted");
            }
        }
        purge_database(&app, &stop).await;
    }
}

/// Deletes `YYYY-MM-DD.log` files more than `days` days old. Other files are left alone.
pub(crate) fn purge_logs(dir: &Path, days: u32) -> usize {
    let today = Utc::now().date_naive();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(date) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if (today - date).num_days() > i64::from(days) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(error) => log::warn!("retention: cannot delete {name:?}: {error}"),
            }
        }
    }
    removed
}

async fn purge_database(app: &Arc<App>, stop: &watch::Receiver<bool>) {
    let now = Utc::now();
    purge(app, stop, "idempotency keys", move |tx| {
        tx.purge_idempotency_keys(now - KEY_RETENTION, BATCH)
    })
    .await;
    trim_events(app, stop, now).await;
    let Some(days) = app.config.job_retention_days else {
        return;
    };
    let before = now - TimeDelta::days(i64::from(days));
    purge(app, stop, "robot messages", move |tx| {
        tx.purge_robot_messages(before, BATCH)
    })
    .await;
    purge(app, stop, "schedule events", move |tx| {
        tx.purge_schedule_events(before, BATCH)
    })
    .await;
    let mut purged = 0;
    while !*stop.borrow() {
        match app
            .db
            .write(move |tx| tx.purge_finished_jobs(before, BATCH))
            .await
        {
            Ok(jobs) if jobs.is_empty() => break,
            Ok(jobs) => {
                purged += jobs.len();
                let packages = app.packages.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for job in jobs {
                        if let Err(error) = packages.remove(&job.package_name, job.id) {
                            log::warn!(
                                "retention: cannot remove the package file of job {}: {error}",
                                job.id
                            );
                        }
                    }
                })
                .await;
            }
            Err(error) => {
                log::warn!("retention: cannot purge finished jobs: {error}");
                break;
            }
        }
    }
    if purged > 0 {
        log::info!("retention: {purged} finished jobs older than {days} days purged");
    }
}

/// Trims the event stream to `--event-retention`: a batch per write, until nothing is older.
async fn trim_events(app: &Arc<App>, stop: &watch::Receiver<bool>, now: chrono::DateTime<Utc>) {
    let horizon = now - crate::app::delta(app.config.event_retention);
    while !*stop.borrow() {
        match app.db.write(move |tx| tx.trim_events(horizon, BATCH)).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                log::warn!("retention: cannot trim the event stream: {error}");
                break;
            }
        }
    }
}

async fn purge<F>(app: &Arc<App>, stop: &watch::Receiver<bool>, what: &str, op: F)
where
    F: Fn(&mut rpa_store::WriteTx<'_>) -> Result<usize, rpa_store::StoreError>
        + Send
        + Sync
        + Copy
        + 'static,
{
    let mut purged = 0;
    while !*stop.borrow() {
        match app.db.write(op).await {
            Ok(0) => break,
            Ok(count) => purged += count,
            Err(error) => {
                log::warn!("retention: cannot purge {what}: {error}");
                break;
            }
        }
    }
    if purged > 0 {
        log::info!("retention: {purged} {what} purged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dated_log_files_older_than_the_limit_go() {
        let dir = tempfile::tempdir().unwrap();
        let today = Utc::now().date_naive();
        let name =
            |days: i64| format!("{}.log", (today - TimeDelta::days(days)).format("%Y-%m-%d"));
        for file in [
            name(0),
            name(30),
            name(31),
            name(400),
            "notes.txt".into(),
            "2020-13-01.log".into(),
        ] {
            std::fs::write(dir.path().join(file), "x").unwrap();
        }
        assert_eq!(purge_logs(dir.path(), 30), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![
            name(0),
            name(30),
            "2020-13-01.log".into(),
            "notes.txt".into(),
        ];
        expected.sort();
        assert_eq!(left, expected);
    }
}
