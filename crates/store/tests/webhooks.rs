//! Webhooks: creation and limits, the lease that lets one instance deliver each, the worker's
//! progress (cursor, attempts, backlog) written all or nothing, disabling with its event, and
//! enabling with the missed events listed. The shared-database case needs `RPA_TEST_POSTGRES`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{create_job, open, register, secs, t0, two_instances};
use rpa_store::{
    CreateWebhook, DeliveryOutcome, EnableWebhook, EventFilter, NewDelivery, NewWebhook, OwedEvent,
    ProgressOutcome, Store, SubjectState, WebhookFilter, WebhookFormat, WebhookProgress,
    WebhookRecord,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn new_webhook(types: &[&str]) -> NewWebhook {
    NewWebhook {
        url: "http://127.0.0.1:9/hook".to_owned(),
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        description: "test".to_owned(),
        format: WebhookFormat::CloudEvents,
        secret: SECRET.to_owned(),
        created_at: t0(),
    }
}

fn create(store: &Store, types: &[&str]) -> WebhookRecord {
    let new = new_webhook(types);
    match store
        .writer()
        .run(move |tx| tx.create_webhook(&new, 100))
        .unwrap()
    {
        CreateWebhook::Created(record) => *record,
        other => panic!("{other:?}"),
    }
}

fn claim(store: &Store) -> Vec<i64> {
    store
        .writer()
        .run(|tx| tx.claim_webhooks(t0(), t0() + secs(30)))
        .unwrap()
        .into_iter()
        .map(|claimed| {
            assert_eq!(claimed.secret, SECRET);
            assert!(!format!("{claimed:?}").contains(SECRET));
            claimed.record.id
        })
        .collect()
}

fn progress(webhook_id: i64, cursor: i64) -> WebhookProgress {
    WebhookProgress {
        webhook_id,
        cursor,
        deliveries: Vec::new(),
        owed: Vec::new(),
        settled: Vec::new(),
        now: t0(),
        give_up_before: t0() - secs(86_400),
        trim: true,
    }
}

fn record(store: &Store, progress: WebhookProgress) -> ProgressOutcome {
    store
        .writer()
        .run(move |tx| tx.record_webhook_progress(&progress))
        .unwrap()
}

fn attempt(event_id: i64, attempt: i32, outcome: DeliveryOutcome) -> NewDelivery {
    NewDelivery {
        event_id,
        attempt,
        at: t0(),
        outcome,
        http_status: Some(if outcome == DeliveryOutcome::Delivered {
            204
        } else {
            500
        }),
        error: None,
        duration_ms: Some(3),
    }
}

fn owed(event_id: i64, attempts: i32, first: Option<chrono::DateTime<chrono::Utc>>) -> OwedEvent {
    OwedEvent {
        event_id,
        subject: "jobs/1".to_owned(),
        event_at: t0(),
        attempts,
        first_attempt_at: first,
        next_attempt_at: t0() + secs(1),
    }
}

#[test]
fn webhooks_are_created_listed_and_deleted_and_start_after_the_last_event() {
    let store = open();
    register(&store, "A", "c1");
    let before = store.read(|c| c.last_event_id()).unwrap();
    assert!(before > 0, "the registration was an event");
    let first = create(&store, &["job.failed", "robot.*"]);
    assert_eq!(first.types, ["job.failed", "robot.*"]);
    assert!(first.active);
    let second = create(&store, &["job.*"]);
    let (cursor, backlog) = store
        .read(move |c| c.webhook_state(first.id))
        .unwrap()
        .unwrap();
    assert_eq!((cursor, backlog), (before, Vec::new()));

    let listed = store
        .read(|c| {
            c.webhooks(&WebhookFilter {
                before: None,
                limit: 10,
            })
        })
        .unwrap();
    assert_eq!(listed, [second.clone(), first.clone()]);
    let page = store
        .read(move |c| {
            c.webhooks(&WebhookFilter {
                before: Some(second.id),
                limit: 10,
            })
        })
        .unwrap();
    assert_eq!(page, std::slice::from_ref(&first));

    assert!(
        store
            .writer()
            .run(move |tx| tx.delete_webhook(first.id))
            .unwrap()
    );
    assert!(
        !store
            .writer()
            .run(move |tx| tx.delete_webhook(first.id))
            .unwrap()
    );
    assert_eq!(store.read(move |c| c.webhook(first.id)).unwrap(), None);
}

#[test]
fn no_more_than_the_maximum_of_webhooks_is_created() {
    let store = open();
    for _ in 0..3 {
        let new = new_webhook(&["job.*"]);
        assert!(matches!(
            store
                .writer()
                .run(move |tx| tx.create_webhook(&new, 3))
                .unwrap(),
            CreateWebhook::Created(_)
        ));
    }
    let new = new_webhook(&["job.*"]);
    assert_eq!(
        store
            .writer()
            .run(move |tx| tx.create_webhook(&new, 3))
            .unwrap(),
        CreateWebhook::TooMany
    );
}

#[test]
fn progress_moves_the_cursor_records_attempts_and_keeps_the_backlog_all_at_once() {
    let store = open();
    let hook = create(&store, &["job.*"]);
    // Not claimed: nothing is recorded.
    assert_eq!(
        record(&store, progress(hook.id, 10)),
        ProgressOutcome::NotOwned
    );
    assert_eq!(claim(&store), [hook.id]);

    let mut round = progress(hook.id, 10);
    round.deliveries = vec![
        attempt(7, 1, DeliveryOutcome::Delivered),
        attempt(8, 1, DeliveryOutcome::Failed),
    ];
    round.owed = vec![owed(8, 1, Some(t0())), owed(9, 0, None)];
    assert_eq!(record(&store, round), ProgressOutcome::Recorded);
    let (cursor, backlog) = store
        .read(move |c| c.webhook_state(hook.id))
        .unwrap()
        .unwrap();
    assert_eq!(cursor, 10);
    assert_eq!(backlog, [owed(8, 1, Some(t0())), owed(9, 0, None)]);

    // The retry succeeds: 8 is settled, 9 is tried next and fails.
    let mut round = progress(hook.id, 5);
    round.deliveries = vec![
        attempt(8, 2, DeliveryOutcome::Delivered),
        attempt(9, 1, DeliveryOutcome::Failed),
    ];
    round.settled = vec![8];
    round.owed = vec![owed(9, 1, Some(t0()))];
    assert_eq!(record(&store, round), ProgressOutcome::Recorded);
    let (cursor, backlog) = store
        .read(move |c| c.webhook_state(hook.id))
        .unwrap()
        .unwrap();
    assert_eq!(cursor, 10, "the cursor never goes back");
    assert_eq!(backlog, [owed(9, 1, Some(t0()))]);

    let attempts = store
        .read(move |c| c.webhook_deliveries(hook.id, None, 10))
        .unwrap();
    let seen: Vec<(i64, i32, DeliveryOutcome)> = attempts
        .iter()
        .map(|a| (a.event_id, a.attempt, a.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            (9, 1, DeliveryOutcome::Failed),
            (8, 2, DeliveryOutcome::Delivered),
            (8, 1, DeliveryOutcome::Failed),
            (7, 1, DeliveryOutcome::Delivered),
        ]
    );
    assert_eq!(attempts[3].http_status, Some(204));
    let older = store
        .read(move |c| c.webhook_deliveries(hook.id, Some(attempts[1].id), 10))
        .unwrap();
    assert_eq!(older.len(), 2);
}

#[test]
fn only_the_newest_thousand_attempts_are_kept() {
    let store = open();
    let hook = create(&store, &["job.*"]);
    claim(&store);
    for round_number in 0..3 {
        let mut round = progress(hook.id, 1);
        round.deliveries = (0..400)
            .map(|n| attempt(round_number * 400 + n, 1, DeliveryOutcome::Delivered))
            .collect();
        record(&store, round);
    }
    let kept = store
        .read(move |c| c.webhook_deliveries(hook.id, None, 5000))
        .unwrap();
    assert_eq!(kept.len(), 1000);
    assert_eq!(kept[0].event_id, 1199);
    assert_eq!(kept[999].event_id, 200);
}

#[test]
fn failing_too_long_disables_the_webhook_with_an_event_without_its_secret() {
    let store = open();
    let hook = create(&store, &["job.*"]);
    claim(&store);
    let mut round = progress(hook.id, 3);
    round.owed = vec![owed(2, 3, Some(t0() - secs(100)))];
    round.give_up_before = t0() - secs(200);
    assert_eq!(record(&store, round.clone()), ProgressOutcome::Recorded);

    round.owed = vec![owed(2, 4, Some(t0() - secs(100)))];
    round.give_up_before = t0() - secs(50);
    let ProgressOutcome::Disabled(disabled) = record(&store, round.clone()) else {
        panic!("not disabled");
    };
    assert!(!disabled.active);
    assert_eq!(disabled.disabled_at, Some(t0()));
    assert!(
        disabled
            .disabled_reason
            .as_deref()
            .unwrap()
            .contains("first attempted")
    );
    // Disabled: no longer this instance's to deliver.
    assert_eq!(record(&store, round), ProgressOutcome::NotOwned);
    assert_eq!(claim(&store), Vec::<i64>::new());

    let events = store
        .read(|c| {
            c.events(&EventFilter {
                types: vec![rpa_store::TypePattern::parse("webhook.*")],
                limit: 10,
                ..EventFilter::default()
            })
        })
        .unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.kind, "webhook.disabled");
    assert_eq!(event.subject, format!("webhooks/{}", hook.id));
    let SubjectState::Other(Some(data)) = &event.state else {
        panic!("{:?}", event.state);
    };
    assert_eq!(data["webhook"]["id"], hook.id);
    assert_eq!(data["webhook"]["active"], false);
    assert!(!data.to_string().contains("whsec_"), "{data}");
}

#[test]
fn enabling_lists_what_was_missed_as_skipped_and_delivers_from_then_on() {
    let store = open();
    register(&store, "A", "c1");
    let hook = create(&store, &["job.*"]);
    claim(&store);
    let job = create_job(&store, "A", t0() + secs(3600));
    let created = store.read(|c| c.last_event_id()).unwrap();
    let mut round = progress(hook.id, created);
    round.owed = vec![owed(created, 1, Some(t0() - secs(100)))];
    round.give_up_before = t0();
    assert!(matches!(
        record(&store, round),
        ProgressOutcome::Disabled(_)
    ));
    // Missed while disabled: a cancellation (a job event) and a robot going offline (another
    // type).
    store
        .writer()
        .run(move |tx| tx.cancel_job(job.id, t0()))
        .unwrap();
    store
        .writer()
        .run(|tx| tx.robot_disconnected("A", "c1", t0(), "closed"))
        .unwrap();
    let last = store.read(|c| c.last_event_id()).unwrap();

    let missed = store
        .read(move |c| c.webhook_missed(hook.id, 1000))
        .unwrap()
        .unwrap();
    assert_eq!(missed.events.len(), 2, "{missed:?}");
    assert_eq!(missed.events[0], created);
    assert_eq!(missed.last_event, last);
    let again = missed.clone();
    let EnableWebhook::Enabled(enabled) = store
        .writer()
        .run(move |tx| tx.enable_webhook(&again, t0()))
        .unwrap()
    else {
        panic!("not enabled");
    };
    assert!(enabled.active);
    assert_eq!(enabled.disabled_reason, None);
    let (cursor, backlog) = store
        .read(move |c| c.webhook_state(hook.id))
        .unwrap()
        .unwrap();
    assert_eq!((cursor, backlog), (last, Vec::new()));
    let skipped: Vec<(i64, i32, DeliveryOutcome)> = store
        .read(move |c| c.webhook_deliveries(hook.id, None, 10))
        .unwrap()
        .iter()
        .map(|a| (a.event_id, a.attempt, a.outcome))
        .collect();
    assert_eq!(
        skipped,
        [
            (missed.events[1], 0, DeliveryOutcome::Skipped),
            (created, 0, DeliveryOutcome::Skipped),
        ]
    );
    // Enabling again is a no-op; a stale read is refused.
    let stale = missed.clone();
    assert!(matches!(
        store
            .writer()
            .run(move |tx| tx.enable_webhook(&stale, t0()))
            .unwrap(),
        EnableWebhook::AlreadyActive(_)
    ));
    assert_eq!(claim(&store), [hook.id]);
}

#[test]
fn one_instance_delivers_a_webhook_until_its_lease_passes_or_it_lets_go() {
    let Some((a, b, _database)) = two_instances() else {
        return;
    };
    let hook = create(&a, &["job.*"]);
    assert_eq!(claim(&a), [hook.id]);
    assert_eq!(claim(&b), Vec::<i64>::new(), "A holds it");
    assert_eq!(record(&b, progress(hook.id, 5)), ProgressOutcome::NotOwned);

    // A's lease passes: B takes it, and A can no longer record progress.
    let later = t0() + secs(31);
    let taken = b
        .writer()
        .run(move |tx| tx.claim_webhooks(later, later + secs(30)))
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(record(&a, progress(hook.id, 5)), ProgressOutcome::NotOwned);

    // B stops in order: A takes it at once.
    b.writer().run(|tx| tx.release_webhooks()).unwrap();
    assert_eq!(claim(&a), [hook.id]);
    a.shutdown();
    b.shutdown();
}
