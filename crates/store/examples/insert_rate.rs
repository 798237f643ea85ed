//! How fast the writer creates jobs, without HTTP: `cargo run --release -p rpa-store --example
//! insert_rate -- [JOBS] [BATCH]`. Submits JOBS job inserts, BATCH at a time in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::time::Instant;

use chrono::Utc;
use rpa_store::{NewJob, RobotRegistration, Store, StoreConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map_or(100_000, |a| a.parse().unwrap());
    let in_flight: usize = args.next().map_or(64, |a| a.parse().unwrap());
    let folder = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::new(folder.path().join("bench.db"))).unwrap();
    let robot = RobotRegistration {
        address: "001AFFDB45C2".into(),
        name: "bench".into(),
        user_id: None,
        protocol: 1,
        metadata: "{}".into(),
        connection_id: "c".into(),
        at: Utc::now(),
    };
    store
        .writer()
        .run(move |tx| tx.register_robot(&robot, &rpa_store::DeliveryPolicy::default()))
        .unwrap();
    let job = NewJob {
        package: r#"{"package_name":"bench","path":"a/b.std"}"#.into(),
        package_name: "bench".into(),
        robot_address: Some("001AFFDB45C2".into()),
        pool: None,
        robot_name: "bench".into(),
        run_at: Utc::now() + chrono::TimeDelta::days(365),
        schedule_id: None,
        retry_of: None,
        created_at: Utc::now(),
        reason: "created by trigger".into(),
        idempotency: None,
    };
    let (done, finished) = mpsc::channel();
    let started = Instant::now();
    let mut submitted = 0;
    let mut completed = 0;
    while completed < jobs {
        while submitted < jobs && submitted - completed < in_flight {
            let job = job.clone();
            let done = done.clone();
            store
                .writer()
                .submit(
                    move |tx| tx.insert_job(&job),
                    move |r| done.send(r.is_ok()).unwrap(),
                )
                .unwrap();
            submitted += 1;
        }
        assert!(finished.recv().unwrap());
        completed += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = store.writer().stats();
    println!(
        "{jobs} jobs in {elapsed:.2} s: {:.0}/s; {} commits, {:.1} per commit, {:.3} ms per commit",
        jobs as f64 / elapsed,
        stats.batches,
        stats.operations as f64 / stats.batches as f64,
        stats.commit_micros as f64 / stats.batches as f64 / 1000.0
    );
    store.shutdown();
}
