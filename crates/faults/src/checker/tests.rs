//! The checker on synthetic ledgers: each defect it must find, and clean runs it must pass.
use super::*;

const ROBOT: &str = "001AFFDB45C2";

fn accepted(key: &str, job_id: i64, due_us: i64) -> Trigger {
    Trigger {
        key: key.to_owned(),
        robot: ROBOT.to_owned(),
        due_us,
        sent_us: due_us - 1_000_000,
        answered_us: due_us - 900_000,
        answer: Answer::Accepted {
            status: 201,
            job_id,
        },
    }
}

fn job(id: i64, key: &str, status: &str) -> ServerJob {
    ServerJob {
        id,
        status: status.to_owned(),
        robot: ROBOT.to_owned(),
        pool: None,
        key: Some(key.to_owned()),
        attempts: 1,
        last_error: None,
        run_at_us: None,
        schedule_id: None,
    }
}

fn delivery(job_id: i64, key: &str, due_us: i64, received_us: i64) -> Delivery {
    Delivery {
        job_id,
        key: Some(key.to_owned()),
        robot: ROBOT.to_owned(),
        received_us,
        due_us: Some(due_us),
    }
}

fn context(jobs: Vec<ServerJob>) -> Context {
    Context {
        jobs: jobs.into_iter().map(|j| (j.id, j)).collect(),
        online: [ROBOT.to_owned()].into_iter().collect(),
        now_us: 100_000_000,
        in_flight_window_us: 1_000_000,
        due_grace_us: 0,
    }
}

#[test]
fn a_clean_run_passes() {
    let ledger = Ledger {
        triggers: vec![accepted("a", 1, 10_000_000), accepted("b", 2, 200_000_000)],
        deliveries: vec![delivery(1, "a", 10_000_000, 10_002_000)],
        faults: vec![],
    };
    let verdict = ledger.check(&context(vec![
        job(1, "a", "Succeeded"),
        job(2, "b", "Pending"),
    ]));
    assert!(verdict.problems().is_empty(), "{:?}", verdict.problems());
    assert_eq!(verdict.count(Fate::Delivered), 1);
    assert_eq!(verdict.count(Fate::PendingNotDue), 1);
}

#[test]
fn a_201_without_a_job_is_lost() {
    let ledger = Ledger {
        triggers: vec![accepted("a", 1, 10_000_000), accepted("b", 2, 10_000_000)],
        deliveries: vec![delivery(1, "a", 10_000_000, 10_002_000)],
        faults: vec![],
    };
    let verdict = ledger.check(&context(vec![job(1, "a", "Succeeded")]));
    assert_eq!(verdict.lost(), 1);
    assert_eq!(verdict.failures[&Fate::Lost], vec![(2, "b".to_owned())]);
    assert_eq!(verdict.problems().len(), 1);
}

#[test]
fn a_job_under_the_id_but_for_another_trigger_is_lost() {
    let ledger = Ledger {
        triggers: vec![accepted("a", 1, 10_000_000)],
        ..Ledger::default()
    };
    let verdict = ledger.check(&context(vec![job(1, "other", "Pending")]));
    assert_eq!(verdict.lost(), 1);
}

#[test]
fn a_package_before_its_due_moment_is_early() {
    let ledger = Ledger {
        triggers: vec![accepted("a", 1, 10_000_000)],
        deliveries: vec![delivery(1, "a", 10_000_000, 9_999_999)],
        faults: vec![],
    };
    let verdict = ledger.check(&context(vec![job(1, "a", "Succeeded")]));
    assert_eq!(verdict.early.len(), 1);
    assert_eq!(verdict.early[0].received_us, 9_999_999);
    assert!(!verdict.problems().is_empty());
}

#[test]
fn the_triggers_due_moment_is_used_when_the_package_lacks_it() {
    let ledger = Ledger {
        triggers: vec![accepted("a", 1, 10_000_000)],
        deliveries: vec![Delivery {
            due_us: None,
            ..delivery(1, "a", 0, 9_000_000)
        }],
        faults: vec![],
    };
    let verdict = ledger.check(&context(vec![job(1, "a", "Succeeded")]));
    assert_eq!(verdict.early.len(), 1);
}

#[test]
fn a_duplicate_without_a_fault_fails() {
    let ledger = Ledger {
        triggers: vec![accepted("a", 1, 10_000_000)],
        deliveries: vec![
            delivery(1, "a", 10_000_000, 10_001_000),
            delivery(1, "a", 10_000_000, 12_000_000),
        ],
        faults: vec![],
    };
    let verdict = ledger.check(&context(vec![job(1, "a", "Succeeded")]));
    assert_eq!(verdict.unexplained_duplicates(), 1);
    assert!(!verdict.problems().is_empty());
}

#[test]
fn a_duplicate_across_a_kill_is_explained_only_when_in_flight() {
    let kill = FaultMark {
        label: "kill -9 #1".to_owned(),
        start_us: 10_500_000,
        end_us: 11_000_000,
    };
    // Received 0.499 s before the kill, again after the restart: in flight.
    let in_flight = Ledger {
        triggers: vec![accepted("a", 1, 10_000_000)],
        deliveries: vec![
            delivery(1, "a", 10_000_000, 10_001_000),
            delivery(1, "a", 10_000_000, 11_200_000),
        ],
        faults: vec![kill.clone()],
    };
    let verdict = in_flight.check(&context(vec![job(1, "a", "Succeeded")]));
    assert_eq!(verdict.explained_duplicates(), 1);
    assert!(verdict.problems().is_empty(), "{:?}", verdict.problems());

    // Received 5 s before the kill: long settled, so a second delivery is a bug.
    let settled = Ledger {
        triggers: vec![accepted("a", 1, 5_000_000)],
        deliveries: vec![
            delivery(1, "a", 5_000_000, 5_500_000),
            delivery(1, "a", 5_000_000, 11_200_000),
        ],
        faults: vec![kill.clone()],
    };
    let verdict = settled.check(&context(vec![job(1, "a", "Succeeded")]));
    assert_eq!(verdict.unexplained_duplicates(), 1);

    // Both deliveries after the restart: no fault between them.
    let after = Ledger {
        triggers: vec![accepted("a", 1, 10_000_000)],
        deliveries: vec![
            delivery(1, "a", 10_000_000, 11_100_000),
            delivery(1, "a", 10_000_000, 11_200_000),
        ],
        faults: vec![kill],
    };
    let verdict = after.check(&context(vec![job(1, "a", "Succeeded")]));
    assert_eq!(verdict.unexplained_duplicates(), 1);
}

#[test]
fn pending_jobs_are_sorted_by_why() {
    let mut offline = job(3, "c", "Pending");
    offline.robot = "OTHER".to_owned();
    let ledger = Ledger {
        triggers: vec![
            accepted("a", 1, 200_000_000),
            accepted("b", 2, 10_000_000),
            Trigger {
                robot: "OTHER".to_owned(),
                ..accepted("c", 3, 10_000_000)
            },
        ],
        ..Ledger::default()
    };
    let verdict = ledger.check(&context(vec![
        job(1, "a", "Pending"),
        job(2, "b", "Pending"),
        offline,
    ]));
    assert_eq!(verdict.count(Fate::PendingNotDue), 1);
    assert_eq!(verdict.count(Fate::Overdue), 1);
    assert_eq!(verdict.count(Fate::PendingRobotOffline), 1);
    assert_eq!(verdict.problems().len(), 1);
}

#[test]
fn a_due_pool_job_nobody_was_assigned_is_overdue_whoever_is_offline() {
    let mut waiting = job(1, "a", "Pending");
    waiting.robot = String::new();
    waiting.pool = Some("night".to_owned());
    let ledger = Ledger {
        triggers: vec![Trigger {
            robot: String::new(),
            ..accepted("a", 1, 10_000_000)
        }],
        ..Ledger::default()
    };
    let verdict = ledger.check(&context(vec![waiting]));
    assert_eq!(verdict.count(Fate::Overdue), 1);
    assert_eq!(verdict.lost(), 0);
}

#[test]
fn a_pool_job_reads_as_unassigned_from_the_api() {
    let view = serde_json::json!({
        "id": 7, "status": "Pending", "robot_address": null, "pool": "night",
        "package": {"fault_key": "k"}, "attempts": 0,
    });
    let job = ServerJob::from_view(&view).expect("a pool job is a job");
    assert_eq!(
        (job.robot.as_str(), job.pool.as_deref()),
        ("", Some("night"))
    );
}

#[test]
fn sent_but_never_received_and_failures_without_reason_fail() {
    let mut failed = job(2, "b", "Failed");
    failed.last_error = Some(" ".to_owned());
    let mut failed_why = job(3, "c", "Failed");
    failed_why.last_error = Some("missed: 3 s late".to_owned());
    let ledger = Ledger {
        triggers: vec![
            accepted("a", 1, 10_000_000),
            accepted("b", 2, 10_000_000),
            accepted("c", 3, 10_000_000),
            accepted("d", 4, 10_000_000),
        ],
        ..Ledger::default()
    };
    let verdict = ledger.check(&context(vec![
        job(1, "a", "Executed"),
        failed,
        failed_why,
        job(4, "d", "Cancelled"),
    ]));
    assert_eq!(verdict.count(Fate::SentNotReceived), 1);
    assert_eq!(verdict.count(Fate::FailedWithoutReason), 1);
    assert_eq!(verdict.count(Fate::FailedWithReason), 1);
    assert_eq!(verdict.count(Fate::Cancelled), 1);
    assert_eq!(verdict.problems().len(), 2);
}

#[test]
fn refused_but_stored_and_phantoms_fail_and_unanswered_commits_are_fine() {
    let ledger = Ledger {
        triggers: vec![
            Trigger {
                answer: Answer::Refused {
                    status: 503,
                    code: Some("database_busy".to_owned()),
                    problem: true,
                    retry_after: true,
                },
                ..accepted("a", 0, 10_000_000)
            },
            Trigger {
                answer: Answer::NoAnswer {
                    error: "connection reset".to_owned(),
                },
                ..accepted("b", 0, 10_000_000)
            },
        ],
        deliveries: vec![
            delivery(2, "b", 10_000_000, 10_000_500),
            delivery(99, "zz", 10_000_000, 10_000_500),
        ],
        faults: vec![],
    };
    let verdict = ledger.check(&context(vec![
        job(1, "a", "Pending"),
        job(2, "b", "Succeeded"),
    ]));
    assert_eq!(verdict.refused_but_stored, vec!["a".to_owned()]);
    assert_eq!(verdict.unanswered_but_stored, 1);
    assert_eq!(verdict.phantom_deliveries, vec![99]);
    assert_eq!(verdict.problems().len(), 2);
}

#[test]
fn deliveries_read_the_key_and_due_moment_from_the_package() {
    let package = json!({"package_name": "p", "fault_key": "k", "due_us": 42})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let delivery = Delivery::from_package(ROBOT, 7, &package, 50);
    assert_eq!(delivery.key.as_deref(), Some("k"));
    assert_eq!(delivery.due_us, Some(42));
    let view = json!({"id": 7, "status": "Pending", "robot_address": ROBOT,
        "package": package, "attempts": 2, "last_error": null});
    let job = ServerJob::from_view(&view);
    assert_eq!(job.as_ref().map(|j| j.attempts), Some(2));
    assert_eq!(job.and_then(|j| j.key), Some("k".to_owned()));
}
