//! Instances: their rows and leases, reaping, and (on PostgreSQL) several instances deciding on
//! the same jobs. The shared-database tests need `RPA_TEST_POSTGRES` (CI sets it for its second
//! run of the suite); without it they say so and pass over, as SQLite has one instance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestDatabase, create_job, open, register, secs, t0, two_instances};
use rpa_store::{DeliveryPolicy, DueOutcome, JobStatus, Notice, Reach, Store};

fn due(store: &Store, id: i64, at: chrono::DateTime<chrono::Utc>) -> DueOutcome {
    store
        .writer()
        .run(move |tx| {
            tx.process_due(&[id], at, &mut |_| Reach::Ready, &DeliveryPolicy::default())
                .map(|mut o| o.remove(0))
        })
        .unwrap()
}

#[test]
fn a_registered_robot_records_the_instance_that_holds_it_and_loses_it_offline() {
    let store = open();
    register(&store, "A", "c1");
    let robot = store.read(|c| c.robot("A")).unwrap().unwrap();
    assert_eq!(robot.instance.as_deref(), Some(store.instance()));
    store
        .writer()
        .run(|tx| tx.robot_disconnected("A", "c1", t0(), "closed"))
        .unwrap();
    let robot = store.read(|c| c.robot("A")).unwrap().unwrap();
    assert_eq!(robot.instance, None);
}

#[test]
fn reaping_takes_a_dead_instances_robots_offline_and_requeues_its_unconfirmed_sendings() {
    let store = open();
    register(&store, "A", "c1");
    let job = create_job(&store, "A", t0()).id;
    assert!(matches!(due(&store, job, t0()), DueOutcome::Send(_)));
    // This store's instance dies: its lease passed long ago.
    store
        .writer()
        .run(|tx| tx.register_instance(t0(), t0() + secs(10), "test"))
        .unwrap();
    let mut config = store.database.config.clone();
    config.instance = "the-next-one".to_owned();
    store.store.shutdown();
    let next = Store::open(&config).unwrap();
    let reaped = next
        .writer()
        .run(|tx| tx.reap_instances(t0() + secs(60), &DeliveryPolicy::default(), false))
        .unwrap();
    assert_eq!(reaped.robots, 1);
    assert_eq!(reaped.sendings, 1);
    assert_eq!(reaped.instances.len(), 1);
    let robot = next.read(|c| c.robot("A")).unwrap().unwrap();
    assert!(!robot.online);
    assert_eq!(robot.instance, None);
    let record = next.read(|c| c.job(job)).unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Pending);
    assert_eq!(record.wake_at, None, "parked until the robot connects");
    assert!(next.read(|c| c.instances()).unwrap().is_empty());
    // Reaping again finds nothing more.
    let again = next
        .writer()
        .run(|tx| tx.reap_instances(t0() + secs(60), &DeliveryPolicy::default(), false))
        .unwrap();
    assert_eq!((again.robots, again.sendings), (0, 0));
    next.shutdown();
}

#[test]
fn a_live_instance_is_not_reaped_and_its_lease_renews() {
    let store = open();
    store
        .writer()
        .run(|tx| tx.register_instance(t0(), t0() + secs(10), "me"))
        .unwrap();
    register(&store, "A", "c1");
    let reaped = store
        .writer()
        .run(|tx| tx.reap_instances(t0() + secs(5), &DeliveryPolicy::default(), false))
        .unwrap();
    assert_eq!(reaped, rpa_store::Reaped::default());
    assert!(
        store
            .writer()
            .run(|tx| tx.renew_lease(t0() + secs(20)))
            .unwrap()
    );
    let instances = store.read(|c| c.instances()).unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].lease_until, t0() + secs(20));
    store.writer().run(|tx| tx.retire_instance()).unwrap();
    assert!(
        !store
            .writer()
            .run(|tx| tx.renew_lease(t0() + secs(30)))
            .unwrap(),
        "a retired (or reaped) instance learns it from its next renewal"
    );
}

#[test]
fn only_the_instance_holding_the_robot_sends_and_the_other_hands_the_job_to_it() {
    let Some((a, b, _database)) = two_instances() else {
        return;
    };
    let (sender, received) = std::sync::mpsc::channel();
    let _listener = b
        .listen(move |notice| {
            if let Notice::HandedOff(handed) = notice {
                let _ = sender.send(handed);
            }
        })
        .unwrap()
        .expect("PostgreSQL listens");
    register(&b, "R", "on-b");
    let job = create_job(&a, "R", t0()).id;

    // Instance a's scheduler does not even see it: the robot is b's.
    let seen = a.read(|c| c.due_jobs(t0() + secs(1), 100)).unwrap();
    assert!(seen.iter().all(|d| d.id != job));
    assert!(
        b.read(|c| c.due_jobs(t0() + secs(1), 100))
            .unwrap()
            .iter()
            .any(|d| d.id == job)
    );

    // Told of it anyway (a trigger through a, a force), a changes nothing and tells b.
    assert_eq!(due(&a, job, t0()), DueOutcome::Elsewhere);
    assert_eq!(
        a.read(|c| c.job(job)).unwrap().unwrap().status,
        JobStatus::Pending
    );
    let handed = received
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("b hears of the job");
    assert_eq!(handed.job_id, job);
    assert!(matches!(due(&b, job, t0()), DueOutcome::Send(_)));
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_robot_that_moves_takes_its_unconfirmed_sendings_with_it() {
    let Some((a, b, _database)) = two_instances() else {
        return;
    };
    register(&a, "R", "on-a");
    let job = create_job(&a, "R", t0()).id;
    let first = match due(&a, job, t0()) {
        DueOutcome::Send(claimed) => claimed,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.attempt, 1);
    // The robot reconnects through the load balancer to b before a confirmed the sending.
    register(&b, "R", "on-b");
    let claim = b
        .writer()
        .run(|tx| tx.claim_for_robot("R", t0(), &DeliveryPolicy::default(), 10, "registered"))
        .unwrap();
    match claim.outcomes.as_slice() {
        [DueOutcome::Send(claimed)] => assert_eq!((claimed.id, claimed.attempt), (job, 2)),
        other => panic!("{other:?}"),
    }
    // a's late record of its lost connection concerns sending 1: it changes nothing.
    let changed = a
        .writer()
        .run(move |tx| tx.connection_lost(&[(job, 1)], t0(), &DeliveryPolicy::default()))
        .unwrap();
    assert!(changed.is_empty());
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_job_another_instance_is_deciding_on_is_looked_at_again_not_dropped() {
    let Some((a, b, database)) = two_instances() else {
        return;
    };
    register(&a, "R", "on-a");
    let job = create_job(&a, "R", t0()).id;
    let lock = common::hold_row_lock(
        &database,
        &format!("SELECT id FROM jobs WHERE id = {job} FOR UPDATE"),
    );
    assert_eq!(due(&a, job, t0()), DueOutcome::Locked(job));
    drop(lock);
    assert!(matches!(due(&a, job, t0()), DueOutcome::Send(_)));
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_schedule_another_instance_is_firing_is_left_to_it() {
    let Some((a, b, database)) = two_instances() else {
        return;
    };
    register(&a, "R", "on-a");
    let schedule = common::create_schedule(&a, "R");
    let lock = common::hold_row_lock(
        &database,
        &format!("SELECT id FROM schedules WHERE id = {schedule} FOR UPDATE"),
    );
    let seen = b
        .writer()
        .run(move |tx| tx.schedule_to_fire(schedule))
        .unwrap();
    assert!(seen.is_none());
    drop(lock);
    let seen = b
        .writer()
        .run(move |tx| tx.schedule_to_fire(schedule))
        .unwrap();
    assert!(seen.is_some());
    a.shutdown();
    b.shutdown();
}

/// Ends the test database's server connections named `application_name`, as a database restart
/// or a failover does.
fn drop_connections(database: &TestDatabase, application_name: &str) {
    common::run_sql(
        database,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = '{application_name}'"
        ),
    );
}

#[test]
fn a_writer_whose_server_connection_drops_connects_again() {
    let Some((a, b, database)) = two_instances() else {
        return;
    };
    register(&a, "R", "on-a");
    drop_connections(&database, "rpa-socket-server writer");
    // The first write after the loss may fail, as unavailable (a 503); the writer connects again
    // before the next batch.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let written = loop {
        match a
            .writer()
            .run(|tx| tx.insert_robot_message("R", "on-a", t0(), "1"))
        {
            Ok(id) => break id,
            Err(error) => {
                assert!(
                    matches!(error, rpa_store::StoreError::Unavailable(_)),
                    "{error:?}"
                );
                assert!(error.is_transient());
                assert!(
                    std::time::Instant::now() < deadline,
                    "the writer never came back"
                );
            }
        }
    };
    let kept = a.read(|c| c.robot_messages("R", None, 10)).unwrap();
    assert_eq!(kept.iter().map(|m| m.id).collect::<Vec<_>>(), [written]);
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_listener_whose_server_connection_drops_hears_hand_offs_again() {
    let Some((a, b, database)) = two_instances() else {
        return;
    };
    let (sender, received) = std::sync::mpsc::channel();
    let _listener = b
        .listen(move |notice| {
            if let Notice::HandedOff(handed) = notice {
                let _ = sender.send(handed.job_id);
            }
        })
        .unwrap()
        .expect("PostgreSQL listens");
    register(&b, "R", "on-b");
    drop_connections(&database, "rpa-socket-server listener");
    // Hand-offs sent while it reconnects are lost (the holder finds those jobs at its next read
    // of due jobs); once it is back, they arrive again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let job = create_job(&a, "R", t0()).id;
        assert_eq!(due(&a, job, t0()), DueOutcome::Elsewhere);
        if received
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_ok_and(|id| id == job)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never came back"
        );
    }
    a.shutdown();
    b.shutdown();
}
