#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{open, register, t0};
use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use rpa_store::{Store, StoreConfig, StoreError};

#[test]
fn waiting_writes_share_one_commit() {
    let store = open();
    register(&store, "A", "c");
    let (sender, receiver) = mpsc::channel();
    for n in 0..2_000 {
        let sender = sender.clone();
        store
            .writer()
            .submit(
                move |tx| tx.insert_robot_message("A", "c", t0(), &n.to_string()),
                move |result| sender.send(result.is_ok()).unwrap(),
            )
            .unwrap();
    }
    drop(sender);
    assert_eq!(receiver.iter().filter(|ok| *ok).count(), 2_000);
    let stats = store.writer().stats();
    assert!(
        stats.batches < 1_000,
        "2,000 queued writes took {} commits",
        stats.batches
    );
    assert!(stats.max_batch > 1);
}

#[test]
fn a_failing_write_does_not_undo_the_others_in_its_batch() {
    let store = open();
    register(&store, "A", "c");
    let (sender, receiver) = mpsc::channel();
    for n in 0..50 {
        let sender = sender.clone();
        // Every fifth write names an unknown robot and fails on the foreign key.
        let robot = if n % 5 == 0 { "nobody" } else { "A" };
        store
            .writer()
            .submit(
                move |tx| tx.insert_robot_message(robot, "c", t0(), "1"),
                move |result| sender.send((robot, result.is_ok())).unwrap(),
            )
            .unwrap();
    }
    drop(sender);
    for (robot, ok) in receiver.iter() {
        assert_eq!(ok, robot == "A");
    }
    let kept = store.read(|c| c.robot_messages("A", None, 100)).unwrap();
    assert_eq!(kept.len(), 40);
}

/// A write that meets a failing statement and answers with a domain outcome (an unknown robot,
/// told by the foreign key) must not take its batch down. On PostgreSQL a failed statement
/// aborts the whole transaction, whose COMMIT then rolls back without an error: the writes
/// around it would be acknowledged and lost.
#[test]
fn a_trigger_for_an_unknown_robot_does_not_undo_its_batch() {
    let store = open();
    register(&store, "A", "c");
    let (sender, receiver) = mpsc::channel();
    for n in 0..50 {
        let sender = sender.clone();
        let robot = if n % 5 == 0 { "nobody" } else { "A" };
        let job = common::new_job(robot, t0());
        store
            .writer()
            .submit(
                move |tx| tx.insert_job(&job),
                move |result| sender.send((robot, result)).unwrap(),
            )
            .unwrap();
    }
    drop(sender);
    for (robot, result) in receiver.iter() {
        match (robot, result) {
            ("A", Ok(rpa_store::InsertJob::Created(_))) => {}
            ("nobody", Ok(rpa_store::InsertJob::UnknownRobot)) => {}
            (robot, other) => panic!("robot {robot}: {other:?}"),
        }
    }
    let kept = store
        .read(|c| {
            c.jobs(&rpa_store::JobFilter {
                limit: 100,
                ..rpa_store::JobFilter::default()
            })
        })
        .unwrap();
    assert_eq!(kept.len(), 40);
}

#[test]
fn a_write_lock_held_elsewhere_makes_writes_fail_as_busy_then_recover() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("busy.db");
    let mut config = StoreConfig::new(&path);
    config.busy_timeout = Duration::from_millis(200);
    let store = Store::open(&config).unwrap();
    register(&store, "A", "c");

    let mut other = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    other.batch_execute("BEGIN IMMEDIATE;").unwrap();
    let result = store
        .writer()
        .run(|tx| tx.insert_robot_message("A", "c", t0(), "1"));
    assert!(matches!(result, Err(StoreError::Busy)), "{result:?}");
    assert!(result.unwrap_err().is_transient());
    other.batch_execute("ROLLBACK;").unwrap();

    store
        .writer()
        .run(|tx| tx.insert_robot_message("A", "c", t0(), "2"))
        .unwrap();
    store.shutdown();
}

#[test]
fn after_shutdown_writes_are_refused() {
    let store = open();
    store.writer().shutdown();
    let result = store
        .writer()
        .run(|tx| tx.mark_all_robots_offline(chrono::Utc::now()));
    assert!(matches!(result, Err(StoreError::WriterStopped)));
}

#[test]
fn reopening_keeps_data_and_job_ids_continue() {
    let database = common::TestDatabase::new();
    let config = database.config.clone();
    let store = Store::open(&config).unwrap();
    register(&store, "A", "c");
    let job = common::create_job(&store, "A", t0());
    store.shutdown();
    let again = Store::open(&config).unwrap();
    assert!(again.read(|c| c.robot("A")).unwrap().is_some());
    let next = common::create_job(&again, "A", t0());
    assert!(next.id > job.id);
    again.shutdown();
}

#[test]
fn a_full_database_refuses_writes_as_full_and_keeps_what_it_had() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(folder.path().join("small.db"));
    config.max_size = Some(256 * 1024);
    let store = Store::open(&config).unwrap();
    register(&store, "A", "c");
    let big = "x".repeat(8 * 1024);
    let mut stored = 0;
    let error = loop {
        let value = format!("\"{big}\"");
        match store
            .writer()
            .run(move |tx| tx.insert_robot_message("A", "c", t0(), &value))
        {
            Ok(_) => stored += 1,
            Err(error) => break error,
        }
        assert!(stored < 1000, "the limit was not applied");
    };
    assert!(matches!(error, StoreError::Full), "{error:?}");
    assert!(error.is_transient());
    let kept = store.read(|c| c.robot_messages("A", None, 10_000)).unwrap();
    assert_eq!(kept.len(), stored);
    store.shutdown();
}

#[test]
fn job_ids_are_never_reused_even_after_the_newest_job_is_purged() {
    let store = open();
    register(&store, "A", "c");
    let newest = common::create_job(&store, "A", t0()).id;
    store
        .writer()
        .run(move |tx| tx.cancel_job(newest, t0()))
        .unwrap();
    let purged = store
        .writer()
        .run(move |tx| tx.purge_finished_jobs(t0() + chrono::TimeDelta::days(1), 10))
        .unwrap();
    assert_eq!(purged.len(), 1);
    let next = common::create_job(&store, "A", t0()).id;
    assert!(
        next > newest,
        "a robot would drop job {next} as a duplicate of {newest}"
    );
}

/// A writer that never pauses keeps the WAL bounded: the writer starts it over, when the
/// checkpoint thread asks, once it passes `wal_restart_pages` (without that, it grew with the
/// load, 283 MB here, and a restart after a crash spent seconds reading it back).
#[test]
fn the_wal_stays_bounded_under_a_writer_that_never_pauses() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("test.db");
    let mut config = StoreConfig::new(&path);
    config.wal_restart_pages = 256; // 1 MiB
    let store = Store::open(&config).unwrap();
    register(&store, "A", "c");
    let wal = folder.path().join("test.db-wal");
    let text = "x".repeat(2_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let text = text.clone();
            std::thread::spawn(move || {
                for _ in 0..6_000 {
                    if std::time::Instant::now() > deadline {
                        break;
                    }
                    let text = text.clone();
                    store
                        .writer()
                        .run(move |tx| tx.insert_robot_message("A", "c", t0(), &text))
                        .unwrap();
                }
            })
        })
        .collect();
    let mut largest = 0;
    while writers.iter().any(|writer| !writer.is_finished()) {
        // Readers come and go meanwhile, as the scheduler's do.
        let _ = store.read(|conn| conn.robot("A")).unwrap();
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |meta| meta.len()));
        std::thread::sleep(Duration::from_millis(5));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let database = std::fs::metadata(&path).unwrap().len();
    store.shutdown();
    // 24,000 messages of 2 KB: over 48 MB went through the WAL.
    assert!(database > 40 << 20, "only {database} bytes were written");
    // Started over past 1 MiB, the WAL holds at most that plus what the writer adds between
    // two passive checkpoints (a quarter second: up to 23 MB seen here in a debug build; the
    // bound leaves room for a slower or faster machine). Without the restart it reached 283 MB.
    assert!(
        largest < 48 << 20,
        "the WAL reached {largest} bytes (database {database} bytes)"
    );
}

#[test]
fn a_stored_value_this_build_does_not_know_is_reported_as_corrupt_data() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("corrupt.db");
    let store = Store::open(&StoreConfig::new(&path)).unwrap();
    register(&store, "A", "c");
    let job = common::create_job(&store, "A", t0());
    let mut other = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    other
        .batch_execute(&format!(
            "UPDATE jobs SET status = 'Lost' WHERE id = {}",
            job.id
        ))
        .unwrap();

    let error = store.read(|c| c.job(job.id)).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    assert!(!error.is_transient());
    assert!(
        error
            .to_string()
            .starts_with(r#"stored data is corrupt: unknown job status "Lost""#),
        "{error}"
    );
    let cause = std::error::Error::source(&error).unwrap();
    assert!(cause.to_string().contains("unknown job status"), "{cause}");
    store.shutdown();
}

#[test]
fn a_database_that_cannot_be_opened_says_where_and_why_and_keeps_the_cause() {
    let folder = tempfile::tempdir().unwrap();
    let blocker = folder.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let path = blocker.join("robots.db");
    let error = Store::open(&StoreConfig::new(&path)).unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!(
            "cannot open the database at {}: cannot create its folder: ",
            path.display()
        )),
        "{shown}"
    );
    let mut causes = Vec::new();
    let mut cause = std::error::Error::source(&error);
    while let Some(next) = cause {
        causes.push(next);
        cause = next.source();
    }
    assert!(
        causes
            .last()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .is_some(),
        "{causes:?}"
    );
    assert!(!error.is_transient());
}
