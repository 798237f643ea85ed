#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Robot credentials: enrolment, admission of a registration, revocation (identity.md).

mod common;

use common::{open, register, secs, t0};
use rpa_store::{
    Admission, CreateCredential, CredentialRecord, EventFilter, EventRecord, NewCredential, Store,
    SubjectState,
};

fn enrol(store: &Store, address: &str, hash: &str) -> CredentialRecord {
    let new = NewCredential {
        robot_address: address.to_owned(),
        description: format!("for {address}"),
        token_hash: hash.to_owned(),
        created_at: t0(),
    };
    match store
        .writer()
        .run(move |tx| tx.create_credential(&new, 3))
        .unwrap()
    {
        CreateCredential::Created(credential) => *credential,
        CreateCredential::TooMany => panic!("too many"),
    }
}

fn admit(store: &Store, address: &str, credential: Option<i64>) -> Admission {
    let address = address.to_owned();
    store
        .writer()
        .run(move |tx| tx.admit_robot(&address, credential, t0() + secs(120)))
        .unwrap()
}

fn events(store: &Store) -> Vec<EventRecord> {
    store
        .read(|conn| {
            conn.events(&EventFilter {
                after: 0,
                types: Vec::new(),
                subjects: Vec::new(),
                limit: 1000,
            })
        })
        .unwrap()
}

#[test]
fn enrolling_an_unknown_address_records_it_and_its_first_registration_is_still_the_first() {
    let store = open();
    let credential = enrol(&store, "001AFFDB45C2", "h1");
    assert_eq!(credential.robot_address, "001AFFDB45C2");
    assert_eq!(credential.last_used_at, None);
    let robot = store.read(|c| c.robot("001AFFDB45C2")).unwrap().unwrap();
    assert!(!robot.online);
    assert_eq!(robot.name, "");
    assert!(register(&store, "001AFFDB45C2", "c1"), "first registration");
    let robot = store.read(|c| c.robot("001AFFDB45C2")).unwrap().unwrap();
    assert!(robot.online);
    assert_eq!(robot.name, "robot-001AFFDB45C2");
    let kinds: Vec<String> = events(&store).into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "robot.credential_created",
            "robot.registered",
            "robot.online"
        ]
    );
}

#[test]
fn a_known_robot_keeps_its_record_when_enrolled_and_events_never_hold_the_hash() {
    let store = open();
    register(&store, "A", "c1");
    let before = store.read(|c| c.robot("A")).unwrap().unwrap();
    let credential = enrol(&store, "A", "secret-hash");
    assert_eq!(store.read(|c| c.robot("A")).unwrap().unwrap(), before);
    let created = events(&store).pop().unwrap();
    assert_eq!(created.kind, "robot.credential_created");
    assert_eq!(created.subject, "robots/A");
    match created.state {
        SubjectState::Credential {
            robot,
            credential: shown,
        } => {
            assert_eq!(*robot, before);
            assert_eq!(*shown, credential);
        }
        other => panic!("{other:?}"),
    }
    let stored: Vec<String> = store
        .read(|c| {
            c.events(&EventFilter {
                after: 0,
                types: Vec::new(),
                subjects: Vec::new(),
                limit: 100,
            })
        })
        .unwrap()
        .into_iter()
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(!stored.concat().contains("secret-hash"));
}

#[test]
fn a_protected_address_admits_only_its_own_credentials() {
    let store = open();
    // Unprotected: anyone, as before.
    assert_eq!(admit(&store, "A", None), Admission::Admitted);
    let a1 = enrol(&store, "A", "a1");
    let a2 = enrol(&store, "A", "a2");
    let b = enrol(&store, "B", "b");
    assert_eq!(admit(&store, "A", None), Admission::Protected);
    assert_eq!(admit(&store, "A", Some(a1.id)), Admission::Admitted);
    assert_eq!(admit(&store, "A", Some(a2.id)), Admission::Admitted);
    assert_eq!(
        admit(&store, "A", Some(b.id)),
        Admission::OtherAddress {
            bound: "B".to_owned()
        }
    );
    // A credential for one address does not let its holder take an unprotected one.
    assert_eq!(
        admit(&store, "C", Some(b.id)),
        Admission::OtherAddress {
            bound: "B".to_owned()
        }
    );
    // Its use is recorded, to the minute.
    let listed = store.read(|c| c.credentials("A")).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, a1.id);
    assert_eq!(listed[0].last_used_at, Some(t0() + secs(120)));
}

#[test]
fn revoking_deletes_the_credential_and_the_last_one_unprotects_the_address() {
    let store = open();
    let old = enrol(&store, "A", "old");
    let new = enrol(&store, "A", "new");
    let (address, id) = ("A".to_owned(), old.id);
    let revoked = store
        .writer()
        .run(move |tx| tx.revoke_credential(&address, id, t0() + secs(1)))
        .unwrap();
    assert_eq!(revoked, Some(old.clone()));
    assert_eq!(admit(&store, "A", Some(old.id)), Admission::Revoked);
    assert_eq!(admit(&store, "A", Some(new.id)), Admission::Admitted);
    assert_eq!(admit(&store, "A", None), Admission::Protected);
    assert_eq!(store.read(|c| c.credential_by_hash("old")).unwrap(), None);
    assert_eq!(
        store
            .read(|c| c.credential_by_hash("new"))
            .unwrap()
            .map(|c| c.id),
        Some(new.id)
    );
    assert_eq!(
        store
            .read(move |c| c.existing_credentials(&[old.id, new.id, 999]))
            .unwrap(),
        vec![new.id]
    );
    // Another robot's credential id, or one gone already: nothing.
    let again = store
        .writer()
        .run(move |tx| tx.revoke_credential("B", new.id, t0()))
        .unwrap();
    assert_eq!(again, None);
    store
        .writer()
        .run(move |tx| tx.revoke_credential("A", new.id, t0()))
        .unwrap()
        .unwrap();
    assert_eq!(admit(&store, "A", None), Admission::Admitted);
    let kinds: Vec<String> = events(&store).into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "robot.credential_revoked")
            .count(),
        2
    );
}

#[test]
fn a_robot_has_a_bounded_number_of_credentials() {
    let store = open();
    for n in 0..3 {
        enrol(&store, "A", &format!("h{n}"));
    }
    let new = NewCredential {
        robot_address: "A".to_owned(),
        description: String::new(),
        token_hash: "h3".to_owned(),
        created_at: t0(),
    };
    assert_eq!(
        store
            .writer()
            .run(move |tx| tx.create_credential(&new, 3))
            .unwrap(),
        CreateCredential::TooMany
    );
    assert_eq!(store.read(|c| c.credentials("A")).unwrap().len(), 3);
}
