//! Events as the store keeps them: written with the change or not at all, read in commit order,
//! trimmed by retention behind a floor. The shared-database case needs `RPA_TEST_POSTGRES`
//! (without it, one instance writes from several threads).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{TestDatabase, create_job, new_job, open, register, secs, t0};
use rpa_store::{
    ChangeOutcome, EventFilter, EventRecord, InsertJob, Store, StoreError, SubjectState,
    TypePattern,
};

fn all_events(store: &Store) -> Vec<EventRecord> {
    store
        .read(|conn| {
            conn.events(&EventFilter {
                limit: 100_000,
                ..EventFilter::default()
            })
        })
        .unwrap()
}

fn kinds(events: &[EventRecord]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|event| (event.kind.clone(), event.subject.clone()))
        .collect()
}

fn floor(store: &Store) -> i64 {
    store.read(|conn| conn.event_floor()).unwrap()
}

/// Holds the writer inside a batch of its own until the returned sender is used (or dropped),
/// so that what is submitted meanwhile is committed together in the next batch.
fn hold_writer(store: &Store) -> mpsc::Sender<()> {
    let (started, is_started) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    store
        .writer()
        .submit(
            move |_tx| {
                let _ = started.send(());
                let _ = released.lock().unwrap().recv();
                Ok(())
            },
            |_: Result<(), StoreError>| {},
        )
        .unwrap();
    is_started.recv().unwrap();
    release
}

#[test]
fn a_write_that_fails_in_a_batch_leaves_no_event_and_the_others_keep_theirs() {
    let store = open();
    register(&store, "A", "c");
    let before = all_events(&store).len();

    let release = hold_writer(&store);
    let (sender, results) = mpsc::channel();
    // Stored, then refused: its job and its job.created must both go.
    let failing = new_job("A", t0());
    let to_fail = sender.clone();
    store
        .writer()
        .submit(
            move |tx| {
                tx.insert_job(&failing)?;
                Err::<i64, _>(StoreError::Failed("refused after the insert".into()))
            },
            move |result| to_fail.send(("failing", result)).unwrap(),
        )
        .unwrap();
    // In the same batch: a write that keeps a part of its work and undoes another in a
    // savepoint, and a plain one.
    let partial = new_job("A", t0());
    let kept = new_job("A", t0());
    let to_partial = sender.clone();
    store
        .writer()
        .submit(
            move |tx| {
                let undone = tx.savepoint(|tx| {
                    tx.insert_job(&partial)?;
                    Err::<(), _>(StoreError::Failed("undone".into()))
                });
                assert!(undone.is_err());
                match tx.insert_job(&kept)? {
                    InsertJob::Created(job) => Ok(job.id),
                    other => panic!("{other:?}"),
                }
            },
            move |result| to_partial.send(("partial", result)).unwrap(),
        )
        .unwrap();
    let plain = new_job("A", t0());
    store
        .writer()
        .submit(
            move |tx| match tx.insert_job(&plain)? {
                InsertJob::Created(job) => Ok(job.id),
                other => panic!("{other:?}"),
            },
            move |result| sender.send(("plain", result)).unwrap(),
        )
        .unwrap();
    let batches = store.writer().stats().batches;
    release.send(()).unwrap();

    let mut created = Vec::new();
    for (which, result) in results.iter() {
        match (which, result) {
            ("failing", Err(_)) => {}
            ("partial" | "plain", Ok(id)) => created.push(id),
            (which, other) => panic!("{which}: {other:?}"),
        }
    }
    created.sort_unstable();
    // The three were one batch (and the held one another).
    assert!(store.writer().stats().batches <= batches + 2);

    let events = all_events(&store);
    let new: Vec<_> = kinds(&events[before..]);
    assert_eq!(
        new,
        created
            .iter()
            .map(|id| ("job.created".to_owned(), format!("jobs/{id}")))
            .collect::<Vec<_>>()
    );
    // Nothing else was stored either: the jobs are exactly those told.
    let jobs = store
        .read(|conn| {
            conn.jobs(&rpa_store::JobFilter {
                limit: 100,
                ..rpa_store::JobFilter::default()
            })
        })
        .unwrap();
    let mut ids: Vec<i64> = jobs.iter().map(|job| job.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, created);
    // A job's event carries the job as it was left.
    let SubjectState::Job(job) = &events[before].state else {
        panic!("{:?}", events[before]);
    };
    assert_eq!(job.id, created[0]);
    assert_eq!(job.status, rpa_store::JobStatus::Pending);
}

#[test]
fn a_refused_change_writes_no_event() {
    let store = open();
    register(&store, "A", "c");
    let job = create_job(&store, "A", t0()).id;
    let cancel = move |tx: &mut rpa_store::WriteTx<'_>| tx.cancel_job(job, t0());
    assert!(matches!(
        store.writer().run(cancel).unwrap(),
        ChangeOutcome::Changed(_)
    ));
    let before = all_events(&store);
    // Cancelled already, and a job that does not exist: nothing changes, nothing is told.
    assert!(matches!(
        store.writer().run(cancel).unwrap(),
        ChangeOutcome::Conflict(_)
    ));
    assert!(matches!(
        store
            .writer()
            .run(|tx| tx.cancel_job(999_999, t0()))
            .unwrap(),
        ChangeOutcome::NotFound
    ));
    assert!(matches!(
        store
            .writer()
            .run(|tx| tx.insert_job(&new_job("nobody", t0())))
            .unwrap(),
        InsertJob::UnknownRobot
    ));
    assert_eq!(all_events(&store), before);
}

#[test]
fn reads_filter_by_type_and_subject_and_start_after_a_cursor() {
    let store = open();
    register(&store, "A", "c");
    register(&store, "B", "c");
    let first = create_job(&store, "A", t0()).id;
    let second = create_job(&store, "B", t0()).id;
    let read = |filter: EventFilter| {
        store
            .read(move |conn| conn.events(&filter))
            .unwrap()
            .into_iter()
            .map(|event| (event.kind, event.subject))
            .collect::<Vec<_>>()
    };
    let all = read(EventFilter {
        limit: 100,
        ..EventFilter::default()
    });
    assert_eq!(
        all,
        [
            ("robot.registered", "robots/A".to_owned()),
            ("robot.online", "robots/A".to_owned()),
            ("robot.registered", "robots/B".to_owned()),
            ("robot.online", "robots/B".to_owned()),
            ("job.created", format!("jobs/{first}")),
            ("job.created", format!("jobs/{second}")),
        ]
        .map(|(kind, subject)| (kind.to_owned(), subject))
    );
    assert_eq!(
        read(EventFilter {
            types: vec![TypePattern::parse("robot.*")],
            subjects: vec!["robots/B".into(), format!("jobs/{second}")],
            limit: 100,
            ..EventFilter::default()
        }),
        [
            ("robot.registered".to_owned(), "robots/B".to_owned()),
            ("robot.online".to_owned(), "robots/B".to_owned()),
        ]
    );
    assert_eq!(
        read(EventFilter {
            types: vec![TypePattern::parse("job.created"), TypePattern::parse("x.*")],
            subjects: vec![format!("jobs/{second}")],
            limit: 100,
            ..EventFilter::default()
        }),
        [("job.created".to_owned(), format!("jobs/{second}"))]
    );
    // Pages: after the last id of the previous one.
    let ids: Vec<i64> = all_events(&store).iter().map(|event| event.id).collect();
    let page = store
        .read(move |conn| {
            conn.events(&EventFilter {
                after: ids[1],
                limit: 2,
                ..EventFilter::default()
            })
        })
        .unwrap();
    assert_eq!(
        page.iter().map(|event| event.id).collect::<Vec<_>>(),
        all_events(&store)[2..4]
            .iter()
            .map(|event| event.id)
            .collect::<Vec<_>>()
    );
}

#[test]
fn trimming_deletes_old_events_behind_a_floor_and_keeps_a_jobs_history() {
    let store = open();
    // At t0: a robot's two events; ten seconds later, a job's.
    register(&store, "A", "c");
    let mut job = new_job("A", t0() + secs(60));
    job.created_at = t0() + secs(10);
    let InsertJob::Created(job) = store.writer().run(move |tx| tx.insert_job(&job)).unwrap() else {
        panic!("not created");
    };
    register(&store, "B", "c");
    let events = all_events(&store);
    assert_eq!(events.len(), 5);
    assert_eq!(floor(&store), 0);

    // Nothing older than the horizon: nothing to do.
    assert!(!store.writer().run(|tx| tx.trim_events(t0(), 100)).unwrap());
    assert_eq!(floor(&store), 0);

    // One event per batch: more may be left after each.
    assert!(
        store
            .writer()
            .run(|tx| tx.trim_events(t0() + secs(5), 1))
            .unwrap()
    );
    assert_eq!(floor(&store), events[0].id);
    assert_eq!(all_events(&store), events[1..]);
    // The rest of what is older, in a batch that is not used up.
    assert!(
        !store
            .writer()
            .run(|tx| tx.trim_events(t0() + secs(5), 100))
            .unwrap()
    );
    assert_eq!(floor(&store), events[1].id);
    assert_eq!(all_events(&store), events[2..]);

    // Up to the job's: it leaves the stream but stays the job's history. The robot's later
    // events (written at t0, after the job's) stop the trimming: times follow ids.
    assert!(
        !store
            .writer()
            .run(|tx| tx.trim_events(t0() + secs(3600), 100))
            .unwrap()
    );
    assert_eq!(floor(&store), events[4].id);
    assert!(all_events(&store).is_empty());
    let history = store.read(move |conn| conn.job_events(job.id)).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id, events[2].id);
    // Reading from below the floor starts at the floor.
    register(&store, "C", "c");
    let after_floor = store
        .read(|conn| {
            conn.events(&EventFilter {
                after: 0,
                limit: 100,
                ..EventFilter::default()
            })
        })
        .unwrap();
    assert_eq!(
        kinds(&after_floor),
        [
            ("robot.registered".to_owned(), "robots/C".to_owned()),
            ("robot.online".to_owned(), "robots/C".to_owned())
        ]
    );
    assert_eq!(
        store.read(|conn| conn.last_event_id()).unwrap(),
        after_floor[1].id
    );
}

#[test]
fn purging_finished_jobs_raises_the_floor_to_their_last_event() {
    let store = open();
    register(&store, "A", "c");
    let old = create_job(&store, "A", t0()).id;
    store
        .writer()
        .run(move |tx| tx.cancel_job(old, t0()))
        .unwrap();
    let young = create_job(&store, "A", t0()).id;
    let events = all_events(&store);
    let last_of_old = events
        .iter()
        .filter(|event| event.subject == format!("jobs/{old}"))
        .map(|event| event.id)
        .max()
        .unwrap();

    let purged = store
        .writer()
        .run(|tx| tx.purge_finished_jobs(t0() + secs(1), 100))
        .unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(purged[0].id, old);
    assert_eq!(floor(&store), last_of_old);
    assert_eq!(
        kinds(&all_events(&store)),
        [("job.created".to_owned(), format!("jobs/{young}"))]
    );
}

/// Several writers, on PostgreSQL two instances: a reader that keeps asking for what follows
/// the last id it saw gets every event exactly once. Were ids not given in commit order, a
/// transaction committing after a larger id was read would be skipped for good.
#[test]
fn a_reader_following_concurrent_writers_gets_every_event_once() {
    let database = TestDatabase::new();
    let mut stores = Vec::new();
    let instances = if database.is_postgres() { 2 } else { 1 };
    for n in 0..instances {
        let mut config = database.config.clone();
        config.instance = format!("instance-{n}");
        stores.push(Store::open(&config).unwrap());
    }
    register(&stores[0], "A", "c");
    let start = stores[0].read(|conn| conn.last_event_id()).unwrap();

    const THREADS: usize = 4;
    const PER_THREAD: usize = 150;
    let writing = Arc::new(AtomicBool::new(true));
    let reader = {
        let store = stores[0].clone();
        let writing = Arc::clone(&writing);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut last = start;
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let done = !writing.load(Ordering::Acquire);
                let page = store
                    .read(move |conn| {
                        conn.events(&EventFilter {
                            after: last,
                            limit: 50,
                            ..EventFilter::default()
                        })
                    })
                    .unwrap();
                for event in &page {
                    assert!(event.id > last);
                    last = event.id;
                    seen.push(event.id);
                }
                // Once the writers are done, one more look finds the rest.
                if done && page.is_empty() {
                    return seen;
                }
                assert!(Instant::now() < deadline, "the reader never caught up");
            }
        })
    };
    let writers: Vec<_> = (0..THREADS * instances)
        .map(|n| {
            let store = stores[n % instances].clone();
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    let job = new_job("A", t0());
                    store.writer().run(move |tx| tx.insert_job(&job)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    writing.store(false, Ordering::Release);
    let seen = reader.join().unwrap();

    let written: Vec<i64> = all_events(&stores[0])
        .into_iter()
        .map(|event| event.id)
        .filter(|id| *id > start)
        .collect();
    assert_eq!(written.len(), THREADS * instances * PER_THREAD);
    assert_eq!(
        seen.iter().copied().collect::<BTreeSet<_>>().len(),
        seen.len(),
        "an event was read twice"
    );
    let missed: Vec<i64> = written
        .iter()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect();
    assert!(missed.is_empty(), "the reader missed {missed:?}");
    assert_eq!(seen, written);
    for store in stores {
        store.shutdown();
    }
}

/// A batch of more events than one insert statement takes on SQLite (chunks of 256, 128, ...,
/// 1 rows), with a robot's events between the jobs': every event is stored with its state, and
/// ids follow the order of the changes.
#[test]
fn a_large_batch_stores_every_event_in_the_order_of_its_changes() {
    let store = open();
    register(&store, "A", "c");
    let before = store.read(|conn| conn.last_event_id()).unwrap();
    let jobs = 701;
    let ids: Vec<i64> = store
        .writer()
        .run(move |tx| {
            let mut ids = Vec::new();
            for index in 0..jobs {
                if index == 300 {
                    let robot = rpa_store::RobotRegistration {
                        address: "B".to_owned(),
                        name: "robot-B".to_owned(),
                        user_id: None,
                        protocol: 1,
                        metadata: r#"{"robotAddress":"B"}"#.to_owned(),
                        connection_id: "d".to_owned(),
                        at: t0(),
                    };
                    tx.register_robot(&robot, &rpa_store::DeliveryPolicy::default())?;
                }
                match tx.insert_job(&new_job("A", t0() + secs(index)))? {
                    InsertJob::Created(job) => ids.push(job.id),
                    other => panic!("{other:?}"),
                }
            }
            Ok(ids)
        })
        .unwrap();
    let events: Vec<EventRecord> = all_events(&store)
        .into_iter()
        .filter(|event| event.id > before)
        .collect();
    // The registration writes two: robot.registered and robot.online.
    assert_eq!(events.len(), ids.len() + 2);
    assert!(events.windows(2).all(|pair| pair[0].id < pair[1].id));
    assert_eq!(
        store.writer().last_event_id(),
        events.last().unwrap().id,
        "the writer publishes the batch's last id"
    );
    let (robot, jobs): (Vec<_>, Vec<_>) = events
        .iter()
        .enumerate()
        .partition(|(_, event)| event.subject == "robots/B");
    // The robot's events sit where its change was made: after the 300th job's.
    let at: Vec<(usize, &str)> = robot
        .iter()
        .map(|(index, event)| (*index, event.kind.as_str()))
        .collect();
    assert_eq!(at, [(300, "robot.registered"), (301, "robot.online")]);
    match &robot[0].1.state {
        SubjectState::Robot(record) => assert_eq!(record.address, "B"),
        other => panic!("{other:?}"),
    }
    let subjects: Vec<String> = jobs
        .iter()
        .map(|(_, event)| event.subject.clone())
        .collect();
    let expected: Vec<String> = ids.iter().map(|id| format!("jobs/{id}")).collect();
    assert_eq!(subjects, expected);
    for ((_, event), index) in jobs.iter().zip(0..) {
        assert_eq!(event.kind, "job.created");
        assert_eq!(event.reason.as_deref(), Some("created by trigger"));
        match &event.state {
            SubjectState::Job(job) => {
                assert_eq!(job.status, rpa_store::JobStatus::Pending);
                assert_eq!(job.robot_address.as_deref(), Some("A"));
                assert_eq!(job.attempts, 0);
                assert_eq!(job.last_error, None);
                assert_eq!(job.run_at, t0() + secs(index));
            }
            other => panic!("{other:?}"),
        }
    }
}
