#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rpa_protocol::{Dialect, RobotAddress};
use rpa_registry::{Outbound, PushError, Registry, Robot, Sending};

fn robot(address: &str) -> Robot {
    Robot {
        address: RobotAddress::new(address),
        dialect: Dialect::Plain,
        extended: true,
    }
}

fn frame(n: i64) -> Outbound {
    Outbound {
        text: n.to_string(),
        job: Some(Sending {
            job_id: n,
            attempt: 1,
        }),
    }
}

#[test]
fn connections_get_distinct_lowercase_uuids() {
    let registry = Registry::new(4);
    let a = registry.connect();
    let b = registry.connect();
    assert_ne!(a.id(), b.id());
    let text = a.id().to_string();
    assert_eq!(text.len(), 36);
    assert_eq!(text, text.to_lowercase());
    assert_eq!(registry.counts(), (2, 0));
    assert!(registry.connection(a.id()).is_some());
}

#[test]
fn a_mac_in_any_spelling_is_one_robot() {
    let registry = Registry::new(4);
    let session = registry.connect();
    registry.register(&session, robot("00-1a-ff-db-45-c2"));
    assert!(registry.is_online(&RobotAddress::new("001AFFDB45C2")));
    assert!(registry.is_online(&RobotAddress::new("00:1A:FF:DB:45:C2")));
    assert_eq!(registry.counts(), (1, 1));
}

#[test]
fn the_live_connection_closing_takes_the_robot_offline() {
    let registry = Registry::new(4);
    let session = registry.connect();
    assert_eq!(registry.disconnect(&session), None, "never registered");
    let session = registry.connect();
    registry.register(&session, robot("A"));
    assert_eq!(registry.disconnect(&session), Some(RobotAddress::new("A")));
    assert!(!registry.is_online(&RobotAddress::new("A")));
    assert_eq!(registry.counts(), (0, 0));
}

#[test]
fn re_registering_under_another_address_abandons_the_first() {
    let registry = Registry::new(4);
    let session = registry.connect();
    registry.register(&session, robot("A"));
    let registered = registry.register(&session, robot("B"));
    assert_eq!(registered.abandoned, Some(RobotAddress::new("A")));
    assert!(registered.replaced.is_none());
    assert!(!registry.is_online(&RobotAddress::new("A")));
    assert!(registry.is_online(&RobotAddress::new("B")));
    // The same metadata again replaces nothing.
    let again = registry.register(&session, robot("B"));
    assert!(again.replaced.is_none() && again.abandoned.is_none());
    assert!(session.close_request().is_none());
}

#[test]
fn the_outbound_queue_is_bounded_and_refuses_after_close() {
    let registry = Registry::new(2);
    let session = registry.connect();
    session.push(frame(1)).unwrap();
    session.push(frame(2)).unwrap();
    assert_eq!(session.push(frame(3)), Err(PushError::Full));
    assert_eq!(session.pop(), Some(frame(1)));
    session.push(frame(3)).unwrap();
    session.close(1001, "going away");
    assert_eq!(session.push(frame(4)), Err(PushError::Closed));
    // The first close request wins.
    session.close(4000, "later");
    assert_eq!(session.close_request().unwrap().code, 1001);
    assert_eq!(session.finish(), vec![frame(2), frame(3)]);
    assert!(session.is_finished());
}

#[tokio::test]
async fn a_push_wakes_the_connection_even_if_it_was_not_waiting_yet() {
    let registry = Registry::new(8);
    let session = registry.connect();
    session.push(frame(1)).unwrap();
    tokio::time::timeout(Duration::from_secs(1), session.woken())
        .await
        .expect("the wake was kept");
    let waiter = Arc::clone(&session);
    let task = tokio::spawn(async move { waiter.woken().await });
    tokio::task::yield_now().await;
    session.close(1000, "bye");
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn sessions_are_shared_safely_between_threads() {
    let registry = Arc::new(Registry::new(10_000));
    let session = registry.connect();
    registry.register(&session, robot("A"));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let registry = Arc::clone(&registry);
            std::thread::spawn(move || {
                for n in 0..500 {
                    let s = registry.robot(&RobotAddress::new("A")).unwrap();
                    s.push(frame(t * 1000 + n)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(session.queued(), 4000);
}

#[tokio::test]
async fn a_backlog_is_flagged_once_and_wakes_the_connection() {
    let registry = Registry::new(2);
    let session = registry.connect();
    assert_eq!(session.room(), 2);
    session.push(frame(1)).unwrap();
    assert_eq!(session.room(), 1);
    assert!(!session.take_backlog());
    session.set_backlog();
    tokio::time::timeout(Duration::from_secs(1), session.woken())
        .await
        .expect("the connection was woken");
    assert!(session.take_backlog());
    assert!(!session.take_backlog(), "taken once");
}

#[test]
fn revoking_a_credential_closes_the_connections_that_presented_it() {
    let registry = Registry::new(4);
    let first = registry.connect_with(Some(7));
    let second = registry.connect_with(Some(7));
    let other = registry.connect_with(Some(8));
    let anonymous = registry.connect();
    registry.register(&first, robot("A"));
    assert_eq!(first.credential(), Some(7));
    assert_eq!(anonymous.credential(), None);
    assert_eq!(registry.credentials_in_use(), vec![7, 8]);
    assert_eq!(registry.close_credential(7, 1008, "credential revoked"), 2);
    assert_eq!(first.close_request().unwrap().code, 1008);
    assert_eq!(second.close_request().unwrap().code, 1008);
    assert!(other.close_request().is_none());
    assert!(anonymous.close_request().is_none());
    assert_eq!(registry.close_credential(9, 1008, "unknown"), 0);
}
