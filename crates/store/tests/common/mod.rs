#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rpa_store::{InsertJob, JobRecord, Location, NewJob, RobotRegistration, Store, StoreConfig};

/// A store on a fresh database: a SQLite file in a temporary folder, or, when
/// `RPA_TEST_POSTGRES` names a PostgreSQL server (`postgres://user@host:port`), a database of its
/// own there, dropped afterwards. CI runs these tests both ways.
pub(crate) struct TestStore {
    pub(crate) store: Store,
    pub(crate) database: TestDatabase,
}

/// Where a test's data lives, kept as long as the test needs it.
pub(crate) struct TestDatabase {
    pub(crate) config: StoreConfig,
    _folder: tempfile::TempDir,
    /// Dropped with the test: the database goes with it.
    _postgres: Option<rpa_testkit::TestDatabase>,
}

impl TestDatabase {
    pub(crate) fn new() -> TestDatabase {
        let folder = tempfile::tempdir().unwrap();
        #[cfg(not(feature = "postgres"))]
        if let Some(server) = rpa_testkit::postgres::server_url() {
            panic!(
                "RPA_TEST_POSTGRES is set ({server}), but rpa-store was built without its postgres feature"
            );
        }
        let postgres = rpa_testkit::TestDatabase::from_env("rpa_store_test").unwrap();
        let config = match &postgres {
            Some(database) => StoreConfig::at(Location::Postgres(database.url().to_owned())),
            None => StoreConfig::new(folder.path().join("test.db")),
        };
        TestDatabase {
            config,
            _folder: folder,
            _postgres: postgres,
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.config.location, Location::Postgres(_))
    }
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
    let database = TestDatabase::new();
    let store = Store::open(&database.config).unwrap();
    TestStore { store, database }
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
        .run(move |tx| tx.register_robot(&robot, &rpa_store::DeliveryPolicy::default()))
        .unwrap()
}

pub(crate) fn new_job(address: &str, run_at: DateTime<Utc>) -> NewJob {
    NewJob {
        package: r#"{"package_name":"pkg","path":"a/b.std"}"#.to_owned(),
        package_name: "pkg".to_owned(),
        robot_address: Some(address.to_owned()),
        pool: None,
        robot_name: "robot".to_owned(),
        run_at,
        schedule_id: None,
        retry_of: None,
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

/// A schedule for `address`, every minute, next due at t0.
pub(crate) fn create_schedule(store: &Store, address: &str) -> i64 {
    let schedule = rpa_store::NewSchedule {
        cron: "0 * * * * *".to_owned(),
        timezone: "UTC".to_owned(),
        start: None,
        end: None,
        package: r#"{"package_name":"pkg","path":"a/b.std"}"#.to_owned(),
        package_name: "pkg".to_owned(),
        robot_address: Some(address.to_owned()),
        pool: None,
        robot_name: "robot".to_owned(),
        next_run_at: Some(t0()),
        created_at: t0(),
        idempotency: None,
    };
    match store
        .writer()
        .run(move |tx| tx.insert_schedule(&schedule))
        .unwrap()
    {
        rpa_store::InsertSchedule::Created(record) => record.id,
        other => panic!("{other:?}"),
    }
}

/// Another connection holding row locks, as a second instance's writer deciding on those rows
/// does: `lock_sql` runs in a transaction that stays open until the guard is dropped.
/// PostgreSQL only.
pub(crate) struct RowLock {
    #[cfg(feature = "postgres")]
    conn: diesel::PgConnection,
}

pub(crate) fn hold_row_lock(database: &TestDatabase, lock_sql: &str) -> RowLock {
    #[cfg(feature = "postgres")]
    {
        use diesel::connection::SimpleConnection;
        let mut conn = connect(database);
        conn.batch_execute(&format!("BEGIN; {lock_sql};")).unwrap();
        RowLock { conn }
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = (database, lock_sql);
        panic!("row locks are held on PostgreSQL only");
    }
}

/// Runs `sql` on the test database from a connection of its own, as another process would
/// (PostgreSQL only).
pub(crate) fn run_sql(database: &TestDatabase, sql: &str) {
    #[cfg(feature = "postgres")]
    {
        use diesel::connection::SimpleConnection;
        connect(database).batch_execute(sql).unwrap();
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = (database, sql);
        panic!("SQL from outside runs on PostgreSQL only");
    }
}

#[cfg(feature = "postgres")]
fn connect(database: &TestDatabase) -> diesel::PgConnection {
    use diesel::Connection;
    let Location::Postgres(url) = &database.config.location else {
        panic!("not a PostgreSQL test database");
    };
    diesel::PgConnection::establish(url).unwrap()
}

impl Drop for RowLock {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        {
            use diesel::connection::SimpleConnection;
            let _ = self.conn.batch_execute("ROLLBACK;");
        }
    }
}

/// Two instances on one fresh database, or None (with a note) without a PostgreSQL server.
pub(crate) fn two_instances() -> Option<(Store, Store, TestDatabase)> {
    let database = TestDatabase::new();
    if !database.is_postgres() {
        eprintln!("RPA_TEST_POSTGRES is not set: the shared-database case is not run");
        return None;
    }
    let mut config = database.config.clone();
    config.instance = "instance-a".to_owned();
    let a = Store::open(&config).unwrap();
    config.instance = "instance-b".to_owned();
    let b = Store::open(&config).unwrap();
    for store in [&a, &b] {
        store
            .writer()
            .run(|tx| tx.register_instance(t0(), t0() + secs(3600), "test"))
            .unwrap();
    }
    Some((a, b, database))
}
