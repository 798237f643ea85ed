#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The operator controls in the store: a finished job run again, a schedule paused and
//! resumed, a robot recorded before its first registration.

mod common;

use common::{create_job, create_schedule, job, open, register, secs, t0};
use rpa_store::{
    EventFilter, IdempotencyKey, JobStatus, PauseOutcome, PutRobot, RetryJob, Store, SubjectState,
    TypePattern,
};

const ROBOT: &str = "001AFFDB45C2";

fn kinds(store: &Store, subject: &str) -> Vec<String> {
    let filter = EventFilter {
        after: 0,
        types: Vec::new(),
        subjects: vec![subject.to_owned()],
        limit: 100,
    };
    store
        .read(move |c| c.events(&filter))
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

fn key(key: &str, hash: &str) -> IdempotencyKey {
    IdempotencyKey {
        key: key.to_owned(),
        request_hash: hash.to_owned(),
    }
}

fn retry(store: &Store, id: i64, idempotency: Option<IdempotencyKey>) -> RetryJob {
    let now = t0() + secs(60);
    store
        .writer()
        .run(move |tx| tx.retry_job(id, now, idempotency.as_ref()))
        .unwrap()
}

#[test]
fn a_cancelled_job_runs_again_as_a_new_pending_job_and_stays_cancelled() {
    let store = open();
    register(&store, ROBOT, "c1");
    let old = create_job(&store, ROBOT, t0() + secs(3600));
    // Pending: not yet.
    assert_eq!(
        retry(&store, old.id, None),
        RetryJob::Conflict(JobStatus::Pending)
    );
    assert_eq!(retry(&store, 999_999, None), RetryJob::NotFound);
    let id = old.id;
    store
        .writer()
        .run(move |tx| tx.cancel_job(id, t0()))
        .unwrap();
    let cancelled = job(&store, old.id);

    let RetryJob::Created(new) = retry(&store, old.id, Some(key("k1", "h1"))) else {
        panic!("expected a new job");
    };
    assert_eq!(new, job(&store, new.id));
    assert_ne!(new.id, old.id);
    assert_eq!(new.retry_of, Some(old.id));
    assert_eq!(new.schedule_id, None);
    assert_eq!(new.status, JobStatus::Pending);
    assert_eq!(new.run_at, t0() + secs(60));
    assert_eq!(new.wake_at, Some(t0() + secs(60)));
    assert_eq!(new.package, old.package);
    assert_eq!(new.robot_name, old.robot_name);
    assert_eq!(job(&store, old.id), cancelled);
    // Its creation event says what it retries, and carries retry_of.
    assert_eq!(kinds(&store, &format!("jobs/{}", new.id)), ["job.created"]);
    let filter = EventFilter {
        after: 0,
        types: vec![TypePattern::Exact("job.created".to_owned())],
        subjects: vec![format!("jobs/{}", new.id)],
        limit: 10,
    };
    let created = store.read(move |c| c.events(&filter)).unwrap();
    assert!(
        created[0]
            .reason
            .as_deref()
            .unwrap()
            .contains(&format!("retry of job {}", old.id))
    );
    match &created[0].state {
        SubjectState::Job(job) => assert_eq!(job.retry_of, Some(old.id)),
        other => panic!("{other:?}"),
    }

    // The same key and request: what it created. The same key for something else: a conflict.
    match retry(&store, old.id, Some(key("k1", "h1"))) {
        RetryJob::Replayed(prior) => match prior.created {
            rpa_store::Created::Job(job) => assert_eq!(job.id, new.id),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(
        retry(&store, old.id, Some(key("k1", "h2"))),
        RetryJob::KeyConflict
    );
}

#[test]
fn a_paused_schedule_is_never_due_and_resumes_where_it_is_told() {
    let store = open();
    register(&store, ROBOT, "c1");
    let id = create_schedule(&store, ROBOT);
    let due = |store: &Store| {
        store
            .read(|c| c.due_schedules(t0() + secs(86_400), 10))
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>()
    };
    assert_eq!(due(&store), [id]);

    let pause = |store: &Store| {
        store
            .writer()
            .run(move |tx| tx.pause_schedule(id, t0() + secs(10)))
            .unwrap()
    };
    let PauseOutcome::Changed(paused) = pause(&store) else {
        panic!("expected a pause");
    };
    assert!(paused.paused && paused.active);
    assert_eq!(paused.next_run_at, None);
    assert!(due(&store).is_empty());
    assert!(matches!(pause(&store), PauseOutcome::Unchanged(_)));
    // Firing it finds nothing to fire (an instance's wake-up may still be on its way).
    let fired = store
        .writer()
        .run(move |tx| tx.schedule_to_fire(id))
        .unwrap();
    assert_eq!(fired.unwrap().next_run_at, None);

    let resume = move |store: &Store, next| {
        store
            .writer()
            .run(move |tx| {
                let schedule = tx.schedule_locked(id)?.unwrap();
                tx.resume_schedule(&schedule, next, t0() + secs(100))
            })
            .unwrap()
    };
    let next = Some(t0() + secs(120));
    let PauseOutcome::Changed(resumed) = resume(&store, next) else {
        panic!("expected a resume");
    };
    assert!(!resumed.paused && resumed.active);
    assert_eq!(resumed.next_run_at, next);
    assert_eq!(due(&store), [id]);
    assert!(matches!(resume(&store, next), PauseOutcome::Unchanged(_)));
    assert_eq!(
        kinds(&store, &format!("schedules/{id}")),
        ["schedule.created", "schedule.paused", "schedule.resumed"]
    );

    // Its end passed while it was paused: resuming ends it.
    pause(&store);
    let PauseOutcome::Changed(ended) = resume(&store, None) else {
        panic!("expected a resume");
    };
    assert!(!ended.active && !ended.paused);
    assert_eq!(ended.ended_reason.as_deref(), Some("no further occurrence"));
    assert!(matches!(pause(&store), PauseOutcome::Inactive(_)));
    assert!(matches!(resume(&store, next), PauseOutcome::Inactive(_)));
    assert!(matches!(
        store
            .writer()
            .run(|tx| tx.pause_schedule(999_999, t0()))
            .unwrap(),
        PauseOutcome::NotFound
    ));
}

#[test]
fn a_robot_recorded_in_advance_is_renamed_and_then_registers() {
    let store = open();
    let put = |store: &Store, name: &'static str| {
        store
            .writer()
            .run(move |tx| tx.put_robot(ROBOT, name, t0()))
            .unwrap()
    };
    let PutRobot::Created(recorded) = put(&store, "FINANCE-7") else {
        panic!("expected a record");
    };
    assert!(!recorded.registered());
    assert!(!recorded.online);
    assert_eq!(recorded.name, "FINANCE-7");
    assert!(matches!(put(&store, "FINANCE-7"), PutRobot::Unchanged(_)));
    let PutRobot::Renamed(renamed) = put(&store, "FINANCE-8") else {
        panic!("expected a rename");
    };
    assert_eq!(renamed.name, "FINANCE-8");
    let subject = format!("robots/{ROBOT}");
    assert_eq!(kinds(&store, &subject), ["robot.updated", "robot.updated"]);

    // Jobs can be made for it; its first registration is a registration.
    create_job(&store, ROBOT, t0() + secs(3600));
    assert!(register(&store, ROBOT, "c1"));
    let robot = store.read(|c| c.robot(ROBOT)).unwrap().unwrap();
    assert!(robot.registered() && robot.online);
    assert_eq!(robot.first_seen, t0());
    assert_eq!(
        kinds(&store, &subject),
        [
            "robot.updated",
            "robot.updated",
            "robot.registered",
            "robot.online"
        ]
    );
    // A registered robot is renamed the same way.
    assert!(matches!(put(&store, "FINANCE-9"), PutRobot::Renamed(_)));
}

#[test]
fn a_schedule_paused_on_one_instance_is_due_on_none() {
    let Some((a, b, _database)) = common::two_instances() else {
        return;
    };
    register(&a, ROBOT, "c1");
    let id = create_schedule(&a, ROBOT);
    let due = |store: &Store| {
        store
            .read(|c| c.due_schedules(t0() + secs(86_400), 10))
            .unwrap()
            .len()
    };
    assert_eq!((due(&a), due(&b)), (1, 1));
    let outcome = a
        .writer()
        .run(move |tx| tx.pause_schedule(id, t0()))
        .unwrap();
    assert!(matches!(outcome, PauseOutcome::Changed(_)));
    assert_eq!((due(&a), due(&b)), (0, 0));
    // The other instance, about to fire it from a wake-up it had, finds nothing due.
    let row = b.writer().run(move |tx| tx.schedule_to_fire(id)).unwrap();
    let row = row.unwrap();
    assert!(row.paused && row.next_run_at.is_none());
    // Resumed there, due on both again.
    let next = Some(t0() + secs(60));
    let outcome = b
        .writer()
        .run(move |tx| {
            let schedule = tx.schedule_locked(id)?.unwrap();
            tx.resume_schedule(&schedule, next, t0())
        })
        .unwrap();
    assert!(matches!(outcome, PauseOutcome::Changed(_)));
    assert_eq!((due(&a), due(&b)), (1, 1));
    a.shutdown();
    b.shutdown();
}
