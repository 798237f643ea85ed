#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rpa_store::{InsertJob, JobRecord, NewJob, RobotRegistration, Store, StoreConfig};

pub(crate) struct TestStore {
    pub(crate) store: Store,
    _folder: tempfile::TempDir,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        self.store.shutdown();
    }
}

pub(crate) fn open() -> TestStore {
    let folder = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::new(folder.path().join("test.db"))).unwrap();
    TestStore {
        store,
        _folder: folder,
    }
}

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 15, 9, 0, 0).unwrap()
}

pub(crate) fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

pub(crate) fn register(store: &Store, address: &str, connection_id: &str) -> bool {
    let robot = RobotRegistration {
        address: address.to_owned(),
        name: format!("robot-{address}"),
        user_id: Some("4".to_owned()),
        protocol: 1,
        metadata: format!(r#"{{"robotAddress":"{address}"}}"#),
        connection_id: connection_id.to_owned(),
        at: t0(),
    };
    store
        .writer()
        .run(move |tx| tx.register_robot(&robot))
        .unwrap()
}

pub(crate) fn new_job(address: &str, run_at: DateTime<Utc>) -> NewJob {
    NewJob {
        package: r#"{"package_name":"pkg","path":"a/b.std"}"#.to_owned(),
        package_name: "pkg".to_owned(),
        robot_address: address.to_owned(),
        robot_name: "robot".to_owned(),
        run_at,
        schedule_id: None,
        created_at: t0(),
        reason: "created by trigger".to_owned(),
        idempotency: None,
    }
}

pub(crate) fn insert(store: &Store, job: NewJob) -> InsertJob {
    store.writer().run(move |tx| tx.insert_job(&job)).unwrap()
}

pub(crate) fn create_job(store: &Store, address: &str, run_at: DateTime<Utc>) -> JobRecord {
    match insert(store, new_job(address, run_at)) {
        InsertJob::Created(job) => job,
        other => panic!("expected a created job, got {other:?}"),
    }
}

pub(crate) fn job(store: &Store, id: i64) -> JobRecord {
    store.read(|conn| conn.job(id)).unwrap().unwrap()
}
