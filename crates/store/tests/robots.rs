#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{open, register, t0};
use rpa_store::RobotFilter;

#[test]
fn a_robot_registers_once_and_is_updated_after() {
    let store = open();
    assert!(register(&store, "001AFFDB45C2", "c1"));
    assert!(!register(&store, "001AFFDB45C2", "c2"));
    let robot = store.read(|c| c.robot("001AFFDB45C2")).unwrap().unwrap();
    assert!(robot.online);
    assert_eq!(robot.connection_id.as_deref(), Some("c2"));
    assert_eq!(robot.user_id.as_deref(), Some("4"));
}

#[test]
fn a_registration_again_records_all_it_brings_a_missing_user_id_included() {
    let store = open();
    register(&store, "A", "c1");
    let first = store.read(|c| c.robot("A")).unwrap().unwrap();
    let again = rpa_store::RobotRegistration {
        address: "A".to_owned(),
        name: "renamed".to_owned(),
        user_id: None,
        protocol: 2,
        metadata: "{}".to_owned(),
        connection_id: "c2".to_owned(),
        at: t0() + common::secs(60),
    };
    let new = store
        .writer()
        .run(move |tx| tx.register_robot(&again, &rpa_store::DeliveryPolicy::default()))
        .unwrap();
    assert!(!new);
    let robot = store.read(|c| c.robot("A")).unwrap().unwrap();
    assert_eq!(
        robot,
        rpa_store::RobotRecord {
            name: "renamed".to_owned(),
            user_id: None,
            connection_id: Some("c2".to_owned()),
            protocol: 2,
            last_seen: t0() + common::secs(60),
            metadata: "{}".to_owned(),
            ..first
        }
    );
}

#[test]
fn only_the_live_connection_takes_a_robot_offline() {
    let store = open();
    register(&store, "A", "old");
    register(&store, "A", "new");
    let replaced = store
        .writer()
        .run(|tx| tx.robot_disconnected("A", "old", t0(), "closed"))
        .unwrap();
    assert!(
        !replaced,
        "the replaced connection must not take the robot offline"
    );
    assert!(store.read(|c| c.robot("A")).unwrap().unwrap().online);
    let live = store
        .writer()
        .run(|tx| tx.robot_disconnected("A", "new", t0(), "closed"))
        .unwrap();
    assert!(live);
    let robot = store.read(|c| c.robot("A")).unwrap().unwrap();
    assert!(!robot.online);
    assert_eq!(robot.connection_id, None);
}

#[test]
fn all_robots_go_offline_at_start_and_listings_page_by_address() {
    let store = open();
    for address in ["C", "A", "B"] {
        register(&store, address, &format!("conn-{address}"));
    }
    let online = |online| RobotFilter {
        online: Some(online),
        after: None,
        limit: 10,
    };
    assert_eq!(store.read(|c| c.robots(&online(true))).unwrap().len(), 3);
    assert_eq!(
        store
            .writer()
            .run(|tx| tx.mark_all_robots_offline(t0()))
            .unwrap(),
        3
    );
    assert!(store.read(|c| c.robots(&online(true))).unwrap().is_empty());
    let page = store
        .read(|c| {
            c.robots(&RobotFilter {
                online: None,
                after: Some("A".into()),
                limit: 1,
            })
        })
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].address, "B");
}

#[test]
fn messages_are_listed_newest_first_in_keyset_pages() {
    let store = open();
    register(&store, "A", "c1");
    for n in 0..5 {
        store
            .writer()
            .run(move |tx| tx.insert_robot_message("A", "c1", t0(), &format!("\"m{n}\"")))
            .unwrap();
    }
    let first = store.read(|c| c.robot_messages("A", None, 2)).unwrap();
    assert_eq!(
        first.iter().map(|m| m.value.as_str()).collect::<Vec<_>>(),
        ["\"m4\"", "\"m3\""]
    );
    let next = store
        .read(|c| c.robot_messages("A", Some(first[1].id), 10))
        .unwrap();
    assert_eq!(next.len(), 3);
    assert_eq!(next[0].value, "\"m2\"");
}

#[test]
fn a_message_from_an_unknown_robot_is_refused_by_the_foreign_key() {
    let store = open();
    let result = store
        .writer()
        .run(|tx| tx.insert_robot_message("nobody", "c", t0(), "1"));
    assert!(result.is_err());
}
