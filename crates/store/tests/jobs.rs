#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{create_job, insert, job, new_job, open, register, secs, t0};
use rpa_store::{
    AckOutcome, ChangeOutcome, DeclineOutcome, Delivery, DeliveryPolicy, DueOutcome,
    IdempotencyKey, InsertJob, JobFilter, JobStatus, Reach, ReportOutcome, Store,
};

fn policy() -> DeliveryPolicy {
    DeliveryPolicy {
        max_attempts: 3,
        ..DeliveryPolicy::default()
    }
}

fn due(store: &Store, id: i64, at: chrono::DateTime<chrono::Utc>, online: bool) -> DueOutcome {
    store
        .writer()
        .run(move |tx| {
            let reach = if online { Reach::Ready } else { Reach::Offline };
            tx.process_due(&[id], at, &mut |_| reach, &policy())
                .map(|mut o| o.remove(0))
        })
        .unwrap()
}

fn claimed(outcome: DueOutcome) -> rpa_store::Claimed {
    match outcome {
        DueOutcome::Send(claimed) => claimed,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn statuses(store: &Store, id: i64) -> Vec<(Option<JobStatus>, JobStatus)> {
    store
        .read(|c| c.job_events(id))
        .unwrap()
        .into_iter()
        .map(|e| (e.from, e.to))
        .collect()
}

#[test]
fn a_job_needs_a_known_robot() {
    let store = open();
    let outcome = insert(&store, new_job("nobody", t0()));
    assert_eq!(outcome, InsertJob::UnknownRobot);
    assert!(
        store
            .read(|c| c.jobs(&JobFilter {
                limit: 10,
                ..JobFilter::default()
            }))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn idempotency_keys_replay_or_conflict() {
    let store = open();
    register(&store, "A", "c");
    let key = |hash: &str| IdempotencyKey {
        key: "k1".into(),
        request_hash: hash.into(),
    };
    let mut first = new_job("A", t0());
    first.idempotency = Some(key("h1"));
    let InsertJob::Created(created) = insert(&store, first) else {
        panic!()
    };
    let mut retry = new_job("A", t0());
    retry.idempotency = Some(key("h1"));
    assert_eq!(
        insert(&store, retry),
        InsertJob::Replayed(rpa_store::Prior {
            created: rpa_store::Created::Job(Box::new(created.clone())),
            response: None,
        })
    );
    store
        .writer()
        .run(|tx| tx.remember_response("k1", "{\"first\":true}"))
        .unwrap();
    let mut again = new_job("A", t0());
    again.idempotency = Some(key("h1"));
    let InsertJob::Replayed(prior) = insert(&store, again) else {
        panic!()
    };
    assert_eq!(prior.response.as_deref(), Some("{\"first\":true}"));
    let mut other = new_job("A", t0());
    other.idempotency = Some(key("h2"));
    assert_eq!(insert(&store, other), InsertJob::KeyConflict);
}

#[test]
fn the_due_queue_is_read_in_time_order() {
    let store = open();
    register(&store, "A", "c");
    let late = create_job(&store, "A", t0() + secs(20));
    let early = create_job(&store, "A", t0() + secs(10));
    let _future = create_job(&store, "A", t0() + secs(100));
    let due = store.read(|c| c.due_jobs(t0() + secs(30), 10)).unwrap();
    assert_eq!(
        due.iter().map(|d| d.id).collect::<Vec<_>>(),
        [early.id, late.id]
    );
    assert_eq!(
        store.read(|c| c.next_wake()).unwrap(),
        Some(t0() + secs(10))
    );
}

#[test]
fn a_due_job_for_an_online_robot_is_claimed_then_written() {
    let store = open();
    register(&store, "A", "c");
    let created = create_job(&store, "A", t0());
    let claim = claimed(due(&store, created.id, t0(), true));
    assert_eq!(claim.attempt, 1);
    assert_eq!(claim.package, created.package);
    let stored = job(&store, created.id);
    assert_eq!(stored.status, JobStatus::Executed);
    assert_eq!(stored.delivery, Delivery::Claimed);
    assert!(stored.wake_at.is_some(), "a claim carries a guard");

    let written = store
        .writer()
        .run(move |tx| {
            tx.mark_written(&[(created.id, 1, false)], t0(), &policy())
                .map(|n| n == 1)
        })
        .unwrap();
    assert!(written);
    let stored = job(&store, created.id);
    assert_eq!(stored.delivery, Delivery::Written);
    assert_eq!(stored.wake_at, None);
    assert_eq!(
        statuses(&store, created.id),
        [
            (None, JobStatus::Pending),
            (Some(JobStatus::Pending), JobStatus::Executed)
        ]
    );
}

#[test]
fn a_job_is_never_claimed_before_its_time() {
    let store = open();
    register(&store, "A", "c");
    let created = create_job(&store, "A", t0() + secs(5));
    assert_eq!(
        due(&store, created.id, t0() + secs(4), true),
        DueOutcome::Stale
    );
    assert_eq!(job(&store, created.id).status, JobStatus::Pending);
}

#[test]
fn an_offline_robot_parks_its_job_until_it_registers() {
    let store = open();
    register(&store, "A", "c");
    let created = create_job(&store, "A", t0());
    assert_eq!(due(&store, created.id, t0(), false), DueOutcome::Parked);
    let parked = job(&store, created.id);
    assert_eq!(parked.status, JobStatus::Pending);
    assert_eq!(
        parked.wake_at,
        Some(t0() + secs(300)),
        "the scheduler looks again only to tell it is overdue"
    );
    // Still offline then: told once, and then it costs the scheduler nothing.
    assert_eq!(
        due(&store, created.id, t0() + secs(300), false),
        DueOutcome::Parked
    );
    let overdue = job(&store, created.id);
    assert_eq!(overdue.wake_at, None);
    let kinds: Vec<String> = store
        .read(move |c| c.job_events(created.id))
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(kinds, ["job.created", "job.waiting", "job.overdue"]);
    assert!(
        store
            .read(|c| c.due_jobs(t0() + secs(3600), 10))
            .unwrap()
            .is_empty()
    );

    let outcomes = store
        .writer()
        .run(|tx| tx.claim_for_robot("A", t0() + secs(60), &policy(), 100, "sent"))
        .unwrap()
        .outcomes;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(claimed(outcomes[0].clone()).id, created.id);
}

#[test]
fn claiming_for_a_robot_takes_what_fits_and_says_more_are_waiting() {
    let store = open();
    register(&store, "A", "c");
    let ids: Vec<i64> = (0..5).map(|_| create_job(&store, "A", t0()).id).collect();
    for id in &ids {
        let id = *id;
        assert_eq!(due(&store, id, t0(), false), DueOutcome::Parked);
    }
    let claim = store
        .writer()
        .run(|tx| tx.claim_for_robot("A", t0() + secs(1), &policy(), 2, "sent"))
        .unwrap();
    assert_eq!(claim.outcomes.len(), 2);
    assert!(claim.more);
    let rest = store
        .writer()
        .run(|tx| tx.claim_for_robot("A", t0() + secs(1), &policy(), 10, "sent"))
        .unwrap();
    assert_eq!(rest.outcomes.len(), 3);
    assert!(!rest.more);
}

#[test]
fn a_busy_robot_parks_its_due_job_with_the_reason() {
    let store = open();
    register(&store, "A", "c");
    let id = create_job(&store, "A", t0()).id;
    let outcome = store
        .writer()
        .run(move |tx| {
            tx.process_due(&[id], t0(), &mut |_| Reach::Busy, &policy())
                .map(|mut o| o.remove(0))
        })
        .unwrap();
    assert_eq!(outcome, DueOutcome::Parked);
    let events = store.read(|c| c.job_events(id)).unwrap();
    assert!(events.last().unwrap().reason.contains("queue is full"));
}

#[test]
fn claiming_for_a_robot_leaves_its_future_jobs_alone() {
    let store = open();
    register(&store, "A", "c");
    let future = create_job(&store, "A", t0() + secs(60));
    let claim = store
        .writer()
        .run(|tx| tx.claim_for_robot("A", t0(), &policy(), 100, "sent"))
        .unwrap();
    assert!(claim.outcomes.is_empty() && !claim.more);
    assert_eq!(job(&store, future.id).status, JobStatus::Pending);
}

#[test]
fn the_misfire_grace_fails_old_jobs_as_missed_but_not_forced_ones() {
    let store = open();
    register(&store, "A", "c");
    let strict = DeliveryPolicy {
        misfire_grace: Some(secs(60)),
        ..policy()
    };
    let old = create_job(&store, "A", t0());
    let forced = create_job(&store, "A", t0());
    store
        .writer()
        .run(move |tx| tx.force_job(forced.id, t0() + secs(600)))
        .unwrap();
    let outcome = store
        .writer()
        .run(move |tx| {
            tx.process_due(&[old.id], t0() + secs(600), &mut |_| Reach::Ready, &strict)
                .map(|mut o| o.remove(0))
        })
        .unwrap();
    assert!(matches!(outcome, DueOutcome::Failed(reason) if reason.starts_with("missed")));
    assert_eq!(job(&store, old.id).status, JobStatus::Failed);
    let outcome = store
        .writer()
        .run(move |tx| {
            tx.process_due(
                &[forced.id],
                t0() + secs(600),
                &mut |_| Reach::Ready,
                &strict,
            )
            .map(|mut o| o.remove(0))
        })
        .unwrap();
    assert!(matches!(outcome, DueOutcome::Send(_)));
}

#[test]
fn an_unsent_claim_goes_back_to_pending_and_due_now() {
    let store = open();
    register(&store, "A", "c");
    let created = create_job(&store, "A", t0());
    claimed(due(&store, created.id, t0(), true));
    let undone = store
        .writer()
        .run(move |tx| tx.unsend(created.id, 1, t0(), t0() + secs(1), "connection closed"))
        .unwrap();
    assert!(undone);
    let stored = job(&store, created.id);
    assert_eq!(stored.status, JobStatus::Pending);
    assert_eq!(
        stored.attempts, 0,
        "a package that was not written is no sending"
    );
    assert_eq!(stored.wake_at, Some(t0() + secs(1)));
    // A stale confirmation of that sending changes nothing.
    let late = store
        .writer()
        .run(move |tx| {
            tx.mark_written(&[(created.id, 1, false)], t0(), &policy())
                .map(|n| n == 1)
        })
        .unwrap();
    assert!(!late);
}

#[test]
fn extended_robots_acknowledge_or_get_the_package_again() {
    let store = open();
    register(&store, "A", "c");
    let created = create_job(&store, "A", t0());
    let id = created.id;
    claimed(due(&store, id, t0(), true));
    store
        .writer()
        .run(move |tx| {
            tx.mark_written(&[(id, 1, true)], t0(), &policy())
                .map(|n| n == 1)
        })
        .unwrap();
    let awaiting = job(&store, id);
    assert_eq!(awaiting.delivery, Delivery::AwaitingAck);
    assert_eq!(awaiting.wake_at, Some(t0() + secs(30)));

    // No acknowledgement in time: sent again.
    let again = claimed(due(&store, id, t0() + secs(30), true));
    assert_eq!(again.attempt, 2);
    store
        .writer()
        .run(move |tx| {
            tx.mark_written(&[(id, 2, true)], t0() + secs(30), &policy())
                .map(|n| n == 1)
        })
        .unwrap();
    let ack = store
        .writer()
        .run(move |tx| tx.acknowledge("A", id, t0() + secs(31), &policy()))
        .unwrap();
    assert_eq!(ack, AckOutcome::Acknowledged);
    let done = job(&store, id);
    assert_eq!(done.delivery, Delivery::Written);
    assert_eq!(done.wake_at, None);
    let again = store
        .writer()
        .run(move |tx| tx.acknowledge("A", id, t0() + secs(32), &policy()))
        .unwrap();
    assert_eq!(again, AckOutcome::AlreadyConfirmed);
    let other = store
        .writer()
        .run(move |tx| tx.acknowledge("B", id, t0(), &policy()))
        .unwrap();
    assert_eq!(other, AckOutcome::NotThisRobot);
}

#[test]
fn unacknowledged_sendings_stop_at_the_limit() {
    let store = open();
    register(&store, "A", "c");
    let id = create_job(&store, "A", t0()).id;
    let mut at = t0();
    for attempt in 1..=3 {
        let claim = claimed(due(&store, id, at, true));
        assert_eq!(claim.attempt, attempt);
        store
            .writer()
            .run(move |tx| {
                tx.mark_written(&[(id, attempt, true)], at, &policy())
                    .map(|n| n == 1)
            })
            .unwrap();
        at += secs(30);
    }
    assert!(matches!(due(&store, id, at, true), DueOutcome::Failed(_)));
    let failed = job(&store, id);
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(failed.last_error.unwrap().contains("not acknowledged"));
}

#[test]
fn a_dropped_connection_resends_what_was_not_acknowledged() {
    let store = open();
    register(&store, "A", "c");
    let id = create_job(&store, "A", t0()).id;
    claimed(due(&store, id, t0(), true));
    store
        .writer()
        .run(move |tx| {
            tx.mark_written(&[(id, 1, true)], t0(), &policy())
                .map(|n| n == 1)
        })
        .unwrap();
    // A stale sending number changes nothing: that sending was superseded.
    let stale = store
        .writer()
        .run(move |tx| tx.connection_lost(&[(id, 7)], t0() + secs(1), &policy()))
        .unwrap();
    assert!(stale.is_empty());
    let changed = store
        .writer()
        .run(move |tx| tx.connection_lost(&[(id, 1)], t0() + secs(1), &policy()))
        .unwrap();
    assert_eq!(changed, [(id, JobStatus::Pending)]);
    assert_eq!(
        job(&store, id).wake_at,
        Some(t0() + secs(1)),
        "due again at once"
    );
    let outcomes = store
        .writer()
        .run(|tx| tx.claim_for_robot("A", t0() + secs(2), &policy(), 10, "sent"))
        .unwrap()
        .outcomes;
    assert_eq!(claimed(outcomes[0].clone()).attempt, 2);
}

#[test]
fn reports_finish_a_job_of_the_reporting_robot_only() {
    let store = open();
    register(&store, "A", "c");
    register(&store, "B", "d");
    let id = create_job(&store, "A", t0()).id;
    let pending = store
        .writer()
        .run(move |tx| tx.report("A", id, true, None, t0()))
        .unwrap();
    assert_eq!(pending, ReportOutcome::NotReportable(JobStatus::Pending));
    claimed(due(&store, id, t0(), true));
    let foreign = store
        .writer()
        .run(move |tx| tx.report("B", id, true, None, t0()))
        .unwrap();
    assert_eq!(foreign, ReportOutcome::NotThisRobot);
    let failure = store
        .writer()
        .run(move |tx| tx.report("A", id, false, Some("file not found"), t0()))
        .unwrap();
    assert_eq!(
        failure,
        ReportOutcome::Updated {
            from: JobStatus::Executed,
            to: JobStatus::Failed
        }
    );
    let failed = job(&store, id);
    assert!(failed.last_error.unwrap().contains("file not found"));
    let unknown = store
        .writer()
        .run(|tx| tx.report("A", 999_999, true, None, t0()))
        .unwrap();
    assert_eq!(unknown, ReportOutcome::UnknownJob);
}

#[test]
fn declines_resend_with_back_off_then_give_up() {
    let store = open();
    register(&store, "A", "c");
    let id = create_job(&store, "A", t0()).id;
    let mut at = t0();
    for attempt in 1..=3 {
        let claim = claimed(due(&store, id, at, true));
        assert_eq!(claim.attempt, attempt);
        store
            .writer()
            .run(move |tx| {
                tx.mark_written(&[(id, attempt, false)], at, &policy())
                    .map(|n| n == 1)
            })
            .unwrap();
        let outcome = store
            .writer()
            .run(move |tx| tx.decline("A", "", at, &policy()))
            .unwrap();
        if attempt < 3 {
            let delay = DeliveryPolicy::backoff(attempt);
            assert_eq!(
                outcome,
                DeclineOutcome::Resend {
                    job_id: id,
                    attempt: attempt + 1,
                    delay
                }
            );
            let waiting = job(&store, id);
            assert_eq!(waiting.status, JobStatus::Pending);
            assert_eq!(waiting.wake_at, Some(at + delay));
            at += delay;
        } else {
            assert_eq!(outcome, DeclineOutcome::GaveUp { job_id: id });
        }
    }
    assert_eq!(job(&store, id).status, JobStatus::Failed);
    assert_eq!(
        store
            .writer()
            .run(|tx| tx.decline("A", "", t0(), &policy()))
            .unwrap(),
        DeclineOutcome::NoJob
    );
}

#[test]
fn backoff_doubles_up_to_a_minute() {
    let seconds: Vec<i64> = (1..=9)
        .map(|a| DeliveryPolicy::backoff(a).num_seconds())
        .collect();
    assert_eq!(seconds, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
}

#[test]
fn a_decline_names_the_package_it_refuses() {
    let store = open();
    register(&store, "A", "c");
    let id = create_job(&store, "A", t0()).id;
    claimed(due(&store, id, t0(), true));
    let other = store
        .writer()
        .run(|tx| tx.decline("A", "another-package", t0(), &policy()))
        .unwrap();
    assert_eq!(other, DeclineOutcome::NoJob);
    let named = store
        .writer()
        .run(|tx| tx.decline("A", "pkg", t0(), &policy()))
        .unwrap();
    assert!(matches!(named, DeclineOutcome::Resend { job_id, .. } if job_id == id));
}

#[test]
fn cancel_and_force_only_touch_pending_jobs() {
    let store = open();
    register(&store, "A", "c");
    let id = create_job(&store, "A", t0() + secs(3600)).id;
    let forced = store
        .writer()
        .run(move |tx| tx.force_job(id, t0()))
        .unwrap();
    let ChangeOutcome::Changed(forced) = forced else {
        panic!()
    };
    assert!(forced.forced);
    assert_eq!(forced.wake_at, Some(t0()));
    let cancelled = store
        .writer()
        .run(move |tx| tx.cancel_job(id, t0()))
        .unwrap();
    assert!(matches!(cancelled, ChangeOutcome::Changed(job) if job.status == JobStatus::Cancelled));
    let again = store
        .writer()
        .run(move |tx| tx.cancel_job(id, t0()))
        .unwrap();
    assert_eq!(again, ChangeOutcome::Conflict(JobStatus::Cancelled));
    assert_eq!(
        store
            .writer()
            .run(move |tx| tx.force_job(id, t0()))
            .unwrap(),
        ChangeOutcome::Conflict(JobStatus::Cancelled)
    );
    assert_eq!(
        store
            .writer()
            .run(|tx| tx.cancel_job(424_242, t0()))
            .unwrap(),
        ChangeOutcome::NotFound
    );
    // Cancelled before it was sent: the scheduler no longer sees it.
    assert_eq!(due(&store, id, t0() + secs(7200), true), DueOutcome::Stale);
}

#[test]
fn sendings_cut_off_by_a_crash_are_sent_again_after_restart() {
    let store = open();
    register(&store, "A", "c");
    let claimed_only = create_job(&store, "A", t0()).id;
    let awaiting = create_job(&store, "A", t0()).id;
    let written = create_job(&store, "A", t0()).id;
    for id in [claimed_only, awaiting, written] {
        claimed(due(&store, id, t0(), true));
    }
    store
        .writer()
        .run(move |tx| {
            tx.mark_written(&[(awaiting, 1, true)], t0(), &policy())
                .map(|n| n == 1)?;
            tx.mark_written(&[(written, 1, false)], t0(), &policy())
                .map(|n| n == 1)
        })
        .unwrap();
    let recovered = store
        .writer()
        .run(|tx| tx.recover_in_flight(t0() + secs(10), &policy()))
        .unwrap();
    assert_eq!(recovered, 2);
    assert_eq!(job(&store, claimed_only).status, JobStatus::Pending);
    assert_eq!(job(&store, awaiting).status, JobStatus::Pending);
    assert_eq!(job(&store, written).status, JobStatus::Executed);
}

#[test]
fn listings_filter_and_page_newest_first() {
    let store = open();
    register(&store, "A", "c");
    register(&store, "B", "d");
    let ids: Vec<i64> = (0..5)
        .map(|n| create_job(&store, if n % 2 == 0 { "A" } else { "B" }, t0()).id)
        .collect();
    let of_a = store
        .read(|c| {
            c.jobs(&JobFilter {
                robot_address: Some("A".into()),
                limit: 2,
                ..JobFilter::default()
            })
        })
        .unwrap();
    assert_eq!(
        of_a.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[4], ids[2]]
    );
    let rest = store
        .read(|c| {
            c.jobs(&JobFilter {
                robot_address: Some("A".into()),
                before: Some(ids[2]),
                limit: 10,
                ..JobFilter::default()
            })
        })
        .unwrap();
    assert_eq!(rest.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[0]]);
    let counts = store.read(|c| c.count_jobs_by_status()).unwrap();
    assert_eq!(counts, [(JobStatus::Pending, 5)]);
}

#[test]
fn retention_purges_finished_jobs_in_batches_and_keeps_pending_ones() {
    let store = open();
    register(&store, "A", "c");
    let finished: Vec<i64> = (0..5).map(|_| create_job(&store, "A", t0()).id).collect();
    for id in &finished {
        let id = *id;
        store
            .writer()
            .run(move |tx| tx.cancel_job(id, t0()))
            .unwrap();
    }
    let pending = create_job(&store, "A", t0()).id;
    let later = t0() + secs(86_400);
    let first = store
        .writer()
        .run(move |tx| tx.purge_finished_jobs(later, 3))
        .unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(first[0].package_name, "pkg");
    let rest = store
        .writer()
        .run(move |tx| tx.purge_finished_jobs(later, 3))
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert!(store.read(|c| c.job(finished[0])).unwrap().is_none());
    assert!(
        store
            .read(|c| c.job_events(finished[0]))
            .unwrap()
            .is_empty(),
        "events go too"
    );
    assert_eq!(job(&store, pending).status, JobStatus::Pending);
    // Nothing newer than the cut is touched.
    let none = store
        .writer()
        .run(move |tx| tx.purge_finished_jobs(t0() - secs(1), 10))
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn package_files_are_owed_in_job_order_until_marked_written() {
    let store = open();
    register(&store, "A", "c");
    let a = create_job(&store, "A", t0()).id;
    let b = create_job(&store, "A", t0()).id;
    let unwritten = store.read(|c| c.unwritten_package_files(10)).unwrap();
    assert_eq!(
        unwritten.iter().map(|f| f.job_id).collect::<Vec<_>>(),
        [a, b]
    );
    assert_eq!(unwritten[0].package_name, "pkg");
    store
        .writer()
        .run(move |tx| tx.mark_package_files_written(&[a]))
        .unwrap();
    let left = store.read(|c| c.unwritten_package_files(10)).unwrap();
    assert_eq!(left.iter().map(|f| f.job_id).collect::<Vec<_>>(), [b]);
    let c = create_job(&store, "A", t0()).id;
    store
        .writer()
        .run(move |tx| tx.mark_package_files_written(&[b]))
        .unwrap();
    let left = store.read(|c| c.unwritten_package_files(10)).unwrap();
    assert_eq!(left.iter().map(|f| f.job_id).collect::<Vec<_>>(), [c]);
}

#[test]
fn many_due_jobs_are_decided_in_one_write_each_by_its_robot() {
    let store = open();
    register(&store, "A", "c");
    register(&store, "B", "d");
    register(&store, "C", "e");
    let mut ids = Vec::new();
    for robot in ["A", "B", "C", "A", "B", "C"] {
        ids.push(create_job(&store, robot, t0()).id);
    }
    let later = create_job(&store, "A", t0() + secs(60)).id;
    ids.push(later);
    ids.push(987_654);
    let batch = ids.clone();
    let outcomes = store
        .writer()
        .run(move |tx| {
            // A has room for one, B is busy, C is offline.
            let mut room_a = 1;
            tx.process_due(
                &batch,
                t0(),
                &mut |robot| match robot {
                    "A" if room_a > 0 => {
                        room_a -= 1;
                        Reach::Ready
                    }
                    "A" | "B" => Reach::Busy,
                    _ => Reach::Offline,
                },
                &policy(),
            )
        })
        .unwrap();
    assert_eq!(outcomes.len(), ids.len(), "one outcome per id, in order");
    assert!(matches!(&outcomes[0], DueOutcome::Send(c) if c.id == ids[0] && c.attempt == 1));
    assert!(
        outcomes[1..6].iter().all(|o| *o == DueOutcome::Parked),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[6], DueOutcome::Stale, "not due yet");
    assert_eq!(outcomes[7], DueOutcome::Stale, "unknown");
    assert_eq!(job(&store, ids[0]).status, JobStatus::Executed);
    let reasons: Vec<String> = ids[1..3]
        .iter()
        .map(|id| {
            store
                .read(|c| c.job_events(*id))
                .unwrap()
                .last()
                .unwrap()
                .reason
                .clone()
        })
        .collect();
    assert!(reasons[0].contains("queue is full"), "{reasons:?}");
    assert!(reasons[1].contains("offline"), "{reasons:?}");
    assert_eq!(job(&store, later).status, JobStatus::Pending);
}

/// A write of the test below.
type Trigger =
    Box<dyn Fn(&mut rpa_store::WriteTx<'_>) -> Result<InsertJob, rpa_store::StoreError> + Send>;

/// Triggers committed together (on PostgreSQL their rows wait for the end of the batch and go in
/// one statement): each gets its own answer, a failed one leaves nothing, and a robot is only
/// taken as known once a committed batch saw it, never from a write that was undone.
#[test]
fn triggers_in_one_batch_each_get_their_own_outcome() {
    use std::sync::{Arc, Mutex, mpsc};

    let store = open();
    register(&store, "A", "c");
    // Hold the writer so that what follows is committed in one batch.
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
            |_: Result<(), rpa_store::StoreError>| {},
        )
        .unwrap();
    is_started.recv().unwrap();
    let (sender, results) = mpsc::channel();
    let submit = |name: &'static str, op: Trigger| {
        let sender = sender.clone();
        store
            .writer()
            .submit(op, move |result| sender.send((name, result)).unwrap())
            .unwrap();
    };
    submit(
        "kept",
        Box::new(|tx| tx.insert_job(&new_job("A", t0() + secs(60)))),
    );
    submit(
        "unknown",
        Box::new(|tx| tx.insert_job(&new_job("NOPE", t0()))),
    );
    submit(
        "undone",
        Box::new(|tx| {
            // A robot registered and triggered in a write that fails: both go.
            let robot = rpa_store::RobotRegistration {
                address: "C".to_owned(),
                name: "robot-C".to_owned(),
                user_id: None,
                protocol: 1,
                metadata: r#"{"robotAddress":"C"}"#.to_owned(),
                connection_id: "d".to_owned(),
                at: t0(),
            };
            tx.register_robot(&robot, &DeliveryPolicy::default())?;
            tx.insert_job(&new_job("C", t0()))?;
            Err(rpa_store::StoreError::Failed(
                "refused after the insert".into(),
            ))
        }),
    );
    submit(
        "also kept",
        Box::new(|tx| tx.insert_job(&new_job("A", t0() + secs(120)))),
    );
    release.send(()).unwrap();
    let mut outcomes: Vec<_> = (0..4).map(|_| results.recv().unwrap()).collect();
    outcomes.sort_by_key(|(name, _)| *name);
    let created = |outcome: &Result<InsertJob, rpa_store::StoreError>| match outcome {
        Ok(InsertJob::Created(job)) => job.clone(),
        other => panic!("{other:?}"),
    };
    let also_kept = created(&outcomes[0].1);
    let kept = created(&outcomes[1].1);
    assert!(outcomes[2].1.is_err(), "{:?}", outcomes[2]);
    assert_eq!(outcomes[3].1.as_ref().unwrap(), &InsertJob::UnknownRobot);
    for created in [&kept, &also_kept] {
        assert_eq!(
            &job(&store, created.id),
            created,
            "the answer is the stored row"
        );
        let events = store.read(|conn| conn.job_events(created.id)).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "job.created");
    }
    let pending = store
        .read(|conn| {
            conn.jobs(&JobFilter {
                limit: 100,
                ..JobFilter::default()
            })
        })
        .unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    // The undone registration left no robot behind, and no belief that it exists.
    assert_eq!(insert(&store, new_job("C", t0())), InsertJob::UnknownRobot);
    // A robot a committed batch saw is still there in the next one.
    let again = create_job(&store, "A", t0());
    assert_eq!(job(&store, again.id), again);
    let files = store
        .read(|conn| conn.unwritten_package_files(100))
        .unwrap();
    for id in [kept.id, also_kept.id, again.id] {
        assert!(
            files.iter().any(|file| file.job_id == id),
            "{id} owes its file"
        );
    }
}
