//! Robot pools in the store: membership, the choice rule, busyness, giving a job back, waking
//! waiting jobs, and (on PostgreSQL) two instances deciding on one pool's jobs at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Utc};
use common::{insert, job, new_job, open, register, secs, t0, two_instances};
use rpa_store::{
    DeclineOutcome, DeliveryPolicy, DueOutcome, InsertJob, JobStatus, Reach, ReportOutcome, Store,
};

fn policy() -> DeliveryPolicy {
    DeliveryPolicy {
        max_attempts: 3,
        pool_busy_timeout: secs(900),
        // Wake-ups for job.overdue would come first: not what these tests look at.
        overdue_after: None,
        ..DeliveryPolicy::default()
    }
}

fn join(store: &Store, address: &str, pools: &[&str]) {
    let address = address.to_owned();
    let pools: Vec<String> = pools.iter().map(|p| (*p).to_owned()).collect();
    let set = store
        .writer()
        .run(move |tx| tx.set_robot_pools(&address, &pools, t0()))
        .unwrap();
    assert!(set.is_some());
}

fn pool_job(store: &Store, pool: &str, run_at: DateTime<Utc>) -> i64 {
    let mut job = new_job("", run_at);
    job.robot_address = None;
    job.pool = Some(pool.to_owned());
    match insert(store, job) {
        InsertJob::Created(job) => {
            assert_eq!(job.robot_address, None);
            job.id
        }
        other => panic!("expected a created job, got {other:?}"),
    }
}

fn due(store: &Store, ids: &[i64], at: DateTime<Utc>) -> Vec<DueOutcome> {
    let ids = ids.to_vec();
    store
        .writer()
        .run(move |tx| tx.process_due(&ids, at, &mut |_| Reach::Ready, &policy()))
        .unwrap()
}

/// The robot the job was sent to, or None.
fn sent_to(outcome: &DueOutcome) -> Option<String> {
    match outcome {
        DueOutcome::Send(claimed) => Some(claimed.robot_address.clone()),
        _ => None,
    }
}

fn report(store: &Store, address: &str, id: i64, at: DateTime<Utc>) {
    let address = address.to_owned();
    let outcome = store
        .writer()
        .run(move |tx| tx.report(&address, id, true, None, at))
        .unwrap();
    assert!(
        matches!(outcome, ReportOutcome::Updated { .. }),
        "{outcome:?}"
    );
}

#[test]
fn membership_is_stored_and_an_unknown_robot_has_none() {
    let store = open();
    register(&store, "A", "c");
    join(&store, "A", &["night", "finance", "night"]);
    let pools = store
        .read(|c| c.robot_pools(&["A".to_owned(), "B".to_owned()]))
        .unwrap();
    assert_eq!(pools["A"], ["finance", "night"]);
    assert!(!pools.contains_key("B"));
    let unknown = store
        .writer()
        .run(|tx| tx.set_robot_pools("B", &["x".to_owned()], t0()))
        .unwrap();
    assert_eq!(unknown, None);
    let summary = store.read(|c| c.pools(t0(), secs(900))).unwrap();
    let names: Vec<&str> = summary.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["finance", "night"]);
    assert_eq!(
        (summary[0].robots, summary[0].online, summary[0].free),
        (1, 1, 1)
    );
}

#[test]
fn the_least_recently_assigned_free_robot_is_chosen() {
    let store = open();
    for address in ["C", "B", "A"] {
        register(&store, address, &format!("c-{address}"));
        join(&store, address, &["p"]);
    }
    let mut order = Vec::new();
    for step in 0..5 {
        let at = t0() + secs(step);
        let id = pool_job(&store, "p", at);
        let outcome = due(&store, &[id], at);
        let robot = sent_to(&outcome[0]).expect("sent");
        assert_eq!(
            job(&store, id).robot_address.as_deref(),
            Some(robot.as_str())
        );
        report(&store, &robot, id, at);
        order.push(robot);
    }
    assert_eq!(order, ["A", "B", "C", "A", "B"]);
}

#[test]
fn busy_robots_are_skipped_and_the_rest_wait_for_the_busy_timeout() {
    let store = open();
    register(&store, "A", "c-a");
    register(&store, "B", "c-b");
    join(&store, "A", &["p"]);
    // B is in the pool, busy with a job addressed to it alone (sent, unreported).
    join(&store, "B", &["p"]);
    let own = common::create_job(&store, "B", t0()).id;
    assert!(sent_to(&due(&store, &[own], t0())[0]).is_some());

    let first = pool_job(&store, "p", t0());
    let second = pool_job(&store, "p", t0());
    let outcomes = due(&store, &[first, second], t0() + secs(1));
    assert_eq!(sent_to(&outcomes[0]).as_deref(), Some("A"));
    assert_eq!(outcomes[1], DueOutcome::Parked);
    let waiting = job(&store, second);
    assert_eq!(waiting.status, JobStatus::Pending);
    assert_eq!(waiting.robot_address, None);
    assert!(waiting.pool_waiting_since.is_some());
    // Woken when the first busy robot's timeout passes: B's, sent at t0.
    assert_eq!(waiting.wake_at, Some(t0() + secs(900)));
    let pool = store
        .read(|c| c.pool("p", t0() + secs(2), secs(900)))
        .unwrap();
    assert_eq!((pool.0.free, pool.0.waiting_jobs), (0, 1));

    // At the timeout B is free again, its own job untouched.
    let outcome = due(&store, &[second], t0() + secs(900));
    assert_eq!(sent_to(&outcome[0]).as_deref(), Some("B"));
    assert_eq!(job(&store, own).status, JobStatus::Executed);
}

#[test]
fn a_report_wakes_the_oldest_waiting_jobs_of_the_robots_pools() {
    let store = open();
    register(&store, "A", "c-a");
    join(&store, "A", &["p"]);
    let first = pool_job(&store, "p", t0());
    let second = pool_job(&store, "p", t0() + secs(1));
    let other = pool_job(&store, "q", t0());
    let outcomes = due(&store, &[first, second, other], t0() + secs(2));
    assert_eq!(sent_to(&outcomes[0]).as_deref(), Some("A"));
    assert_eq!(outcomes[1], DueOutcome::Parked);
    report(&store, "A", first, t0() + secs(3));
    let woken = store
        .writer()
        .run(|tx| tx.wake_pools_of("A", t0() + secs(3), 10))
        .unwrap();
    assert_eq!(woken, [second], "only the pools A is in");
    assert_eq!(job(&store, second).wake_at, Some(t0() + secs(3)));
}

#[test]
fn a_cancelled_waiting_job_passes_its_busy_timeout_wake_up_to_the_next() {
    let store = open();
    register(&store, "A", "c-a");
    join(&store, "A", &["p"]);
    let own = common::create_job(&store, "A", t0()).id;
    assert!(sent_to(&due(&store, &[own], t0())[0]).is_some());
    // A is busy: the first waiting job holds A's timeout as its wake-up, the second none.
    let first = pool_job(&store, "p", t0());
    let second = pool_job(&store, "p", t0() + secs(1));
    let outcomes = due(&store, &[first, second], t0() + secs(2));
    assert_eq!(outcomes, [DueOutcome::Parked, DueOutcome::Parked]);
    assert_eq!(job(&store, first).wake_at, Some(t0() + secs(900)));
    assert_eq!(job(&store, second).wake_at, None);

    let cancelled = store
        .writer()
        .run(move |tx| tx.cancel_job(first, t0() + secs(3)))
        .unwrap();
    assert!(matches!(cancelled, rpa_store::ChangeOutcome::Changed(_)));
    assert_eq!(job(&store, second).wake_at, Some(t0() + secs(900)));
    let outcome = due(&store, &[second], t0() + secs(900));
    assert_eq!(sent_to(&outcome[0]).as_deref(), Some("A"));
}

#[test]
fn a_cancelled_job_without_a_wake_up_leaves_the_others_as_they_were() {
    let store = open();
    register(&store, "A", "c-a");
    join(&store, "A", &["p"]);
    let own = common::create_job(&store, "A", t0()).id;
    assert!(sent_to(&due(&store, &[own], t0())[0]).is_some());
    let first = pool_job(&store, "p", t0());
    let second = pool_job(&store, "p", t0() + secs(1));
    let third = pool_job(&store, "p", t0() + secs(1));
    due(&store, &[first, second, third], t0() + secs(2));
    store
        .writer()
        .run(move |tx| tx.cancel_job(second, t0() + secs(3)))
        .unwrap();
    assert_eq!(job(&store, first).wake_at, Some(t0() + secs(900)));
    assert_eq!(job(&store, third).wake_at, None);
}

#[test]
fn a_declined_pool_job_goes_back_and_prefers_another_robot() {
    let store = open();
    register(&store, "A", "c-a");
    register(&store, "B", "c-b");
    join(&store, "A", &["p"]);
    join(&store, "B", &["p"]);
    let id = pool_job(&store, "p", t0());
    assert_eq!(sent_to(&due(&store, &[id], t0())[0]).as_deref(), Some("A"));
    let declined = store
        .writer()
        .run(|tx| tx.decline("A", "", t0() + secs(1), &policy()))
        .unwrap();
    let DeclineOutcome::Resend { delay, .. } = declined else {
        panic!("{declined:?}")
    };
    let back = job(&store, id);
    assert_eq!(
        (back.status, back.robot_address.as_deref()),
        (JobStatus::Pending, None)
    );
    // After the back-off: B, though A was assigned less recently... A gave it back.
    let at = t0() + secs(1) + delay;
    let outcome = due(&store, &[id], at);
    assert_eq!(sent_to(&outcome[0]).as_deref(), Some("B"));
    assert_eq!(job(&store, id).attempts, 2);
    let events: Vec<String> = store
        .read(move |c| c.job_events(id))
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(events.contains(&"job.requeued".to_owned()), "{events:?}");
}

#[test]
fn a_job_unreported_past_the_report_timeout_fails_and_frees_its_robot() {
    let store = open();
    register(&store, "A", "c-a");
    join(&store, "A", &["p"]);
    let strict = DeliveryPolicy {
        report_timeout: Some(secs(60)),
        ..policy()
    };
    let first = pool_job(&store, "p", t0());
    let second = pool_job(&store, "p", t0());
    let run = |ids: Vec<i64>, at: DateTime<Utc>| {
        store
            .writer()
            .run(move |tx| tx.process_due(&ids, at, &mut |_| Reach::Ready, &strict))
            .unwrap()
    };
    let outcomes = run(vec![first, second], t0());
    assert_eq!(sent_to(&outcomes[0]).as_deref(), Some("A"));
    store
        .writer()
        .run(move |tx| tx.mark_written(&[(first, 1, false)], t0(), &strict))
        .unwrap();
    assert_eq!(job(&store, first).wake_at, Some(t0() + secs(60)));
    let outcomes = run(vec![first], t0() + secs(60));
    assert!(
        matches!(&outcomes[0], DueOutcome::Failed(reason) if reason.contains("no report within"))
    );
    // The freed robot's pool job is woken in the same decision.
    assert!(outcomes.contains(&DueOutcome::Wake(second)), "{outcomes:?}");
    let outcome = run(vec![second], t0() + secs(60));
    assert_eq!(sent_to(&outcome[0]).as_deref(), Some("A"));
}

#[test]
fn two_instances_never_give_one_robot_two_jobs_nor_one_job_twice() {
    let Some((a, b, _database)) = two_instances() else {
        return;
    };
    register(&a, "A", "c-a");
    register(&b, "B", "c-b");
    join(&a, "A", &["p"]);
    join(&b, "B", &["p"]);
    let ids: Vec<i64> = (0..20).map(|_| pool_job(&a, "p", t0())).collect();
    // Both instances decide on all of them at the same moment.
    let (from_a, from_b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| due(&a, &ids, t0() + secs(1)));
        let b = scope.spawn(|| due(&b, &ids, t0() + secs(1)));
        (a.join().unwrap(), b.join().unwrap())
    });
    // Each instance sends only to the robot it holds.
    let sends_a: Vec<String> = from_a.iter().filter_map(sent_to).collect();
    let sends_b: Vec<String> = from_b.iter().filter_map(sent_to).collect();
    assert!(sends_a.iter().all(|r| r == "A"), "{sends_a:?}");
    assert!(sends_b.iter().all(|r| r == "B"), "{sends_b:?}");
    // Each robot got one job at most, and no job went to two robots.
    let assigned: Vec<(i64, String)> = ids
        .iter()
        .filter_map(|id| job(&a, *id).robot_address.map(|r| (*id, r)))
        .collect();
    let mut robots: Vec<&str> = assigned.iter().map(|(_, r)| r.as_str()).collect();
    robots.sort_unstable();
    let before = robots.len();
    robots.dedup();
    assert_eq!(
        before,
        robots.len(),
        "a robot was given two jobs: {assigned:?}"
    );
    assert!(sends_a.len() <= 1 && sends_b.len() <= 1);
    // A job assigned to the other instance's robot is that instance's to send: together,
    // both robots are busy now.
    assert_eq!(assigned.len(), 2, "{assigned:?} {from_a:?} {from_b:?}");
}
