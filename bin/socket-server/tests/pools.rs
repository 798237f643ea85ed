#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Issue 15 end to end: robot pools (docs/POOLS.md). Membership, the pool routes and shapes,
//! assignment to a free robot, waiting when all are busy, the choice rule, declines and lost
//! connections returning a job to its pool, the busy and report timeouts, restarts, and two
//! instances sharing one pool on PostgreSQL.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Server, Ws, http, next_package, next_text, send};
use serde_json::{Value, json};

const A: &str = "0A0000000001";
const B: &str = "0A0000000002";
const C: &str = "0A0000000003";
const QUIET: Duration = Duration::from_millis(400);
const WAIT: Duration = Duration::from_secs(10);

fn pool_trigger(pool: &str) -> Value {
    json!({
        "Package": {"package_name": "pool-pkg", "path": "studio/pool.std"},
        "Robot": {"pool": pool},
        "Schedule": {"at": rpa_testkit::rfc3339_millis(chrono::Utc::now())}
    })
}

async fn put_pools(server: &Server, address: &str, pools: &[&str]) -> (u16, Value) {
    let body = json!({ "pools": pools }).to_string();
    http(
        server.addr,
        "PUT",
        &format!("/api/robots/{address}/pools"),
        Some(&body),
        &[],
    )
    .await
}

/// A robot registered and put in `pools`.
async fn member(server: &Server, address: &str, pools: &[&str]) -> Ws {
    let ws = server.robot(&format!("robot-{address}"), address).await;
    let (status, robot) = put_pools(server, address, pools).await;
    assert_eq!(status, 200, "{robot}");
    ws
}

async fn trigger(server: &Server, pool: &str) -> i64 {
    let (status, job) = server.post("/api/jobs", &pool_trigger(pool)).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["pool"], pool);
    assert_eq!(job["robot_address"], Value::Null);
    job["id"].as_i64().unwrap()
}

async fn job(server: &Server, id: i64) -> Value {
    let (status, job) = server.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(status, 200, "{job}");
    job
}

async fn wait_job(server: &Server, id: i64, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = job(server, id).await;
        if check(&found) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never got there: {found}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn report(ws: &mut Ws, id: i64) {
    send(
        ws,
        &json!({"_event": "client robot message", "value": {"job_id": id, "status": "success"}}),
    )
    .await;
}

async fn package(ws: &mut Ws) -> i64 {
    next_package(ws, WAIT).await.expect("a package").0
}

async fn pool(server: &Server, name: &str) -> Value {
    let (status, pool) = server.get(&format!("/api/pools/{name}")).await;
    assert_eq!(status, 200, "{pool}");
    pool
}

fn event_types(job: &Value) -> Vec<String> {
    job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn membership_routes_and_shapes() {
    let server = Server::start(&[]);
    let _a = server.robot("robot-a", A).await;
    let (_, robot) = server.get(&format!("/api/robots/{A}")).await;
    assert_eq!(robot["pools"], json!([]));

    let (status, robot) = put_pools(&server, A, &["night", "finance", "finance"]).await;
    assert_eq!(status, 200, "{robot}");
    assert_eq!(robot["pools"], json!(["finance", "night"]));
    let (_, listed) = server.get("/api/robots").await;
    assert_eq!(listed["items"][0]["pools"], json!(["finance", "night"]));

    // Never registered: 404; bad names: 422 with the item named.
    let (status, _) = put_pools(&server, "0F0000000009", &["finance"]).await;
    assert_eq!(status, 404);
    let (status, problem) = put_pools(&server, A, &["ok", "not ok"]).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "pools[1]", "{problem}");

    let (status, pools) = server.get("/api/pools").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = pools["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["finance", "night"]);
    let finance = pool(&server, "finance").await;
    assert_eq!(
        (
            finance["robots"].as_i64(),
            finance["online"].as_i64(),
            finance["free"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{finance}"
    );
    assert_eq!(finance["members"][0]["robot_address"], A);
    let unused = pool(&server, "nobody.uses-this_1").await;
    assert_eq!(unused["robots"], 0);
    assert_eq!(unused["waiting_jobs"], 0);
    let (status, _) = server.get("/api/pools/not%20valid").await;
    assert_eq!(status, 422);

    // The membership change is an event.
    let (_, events) = server
        .get(&format!(
            "/api/events?type=robot.updated&subject=robots/{A}"
        ))
        .await;
    assert_eq!(events["items"].as_array().unwrap().len(), 1, "{events}");
    assert_eq!(
        events["items"][0]["data"]["robot"]["pools"],
        json!(["finance", "night"]),
        "{events}"
    );

    // Triggers: a pool nobody is in is accepted; both robot and pool is refused.
    let (status, job) = server.post("/api/jobs", &pool_trigger("empty")).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["pool"], "empty");
    let mut both = pool_trigger("x");
    both["Robot"]["robot_address"] = json!(A);
    let (status, problem) = server.post("/api/jobs", &both).await;
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = server.post("/api/jobs", &pool_trigger("bad name")).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "Robot.pool");

    // A recurring trigger for a pool: the schedule shows it.
    let mut recurring = pool_trigger("finance");
    recurring["Schedule"] = json!({"cron": "0 3 * * *"});
    let (status, schedule) = server.post("/api/jobs", &recurring).await;
    assert_eq!(status, 201, "{schedule}");
    assert_eq!(schedule["pool"], "finance");
    assert_eq!(schedule["robot_address"], Value::Null);

    // The jobs filter.
    let (_, listed) = server.get("/api/jobs?pool=empty").await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["pool"], "empty");
    let (_, listed) = server.get("/api/jobs?pool=finance").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_compat_route_takes_a_pool_too() {
    let server = Server::start(&[]);
    let mut a = member(&server, A, &["finance"]).await;
    let (status, created) = server.post("/pkg", &pool_trigger("finance")).await;
    assert!(status == 200 || status == 201, "{status} {created}");
    let id = package(&mut a).await;
    let sent = job(&server, id).await;
    assert_eq!(sent["pool"], "finance");
    assert_eq!(sent["robot_address"], A);
}

#[tokio::test]
async fn free_robots_get_jobs_and_the_rest_wait_for_a_report() {
    let server = Server::start(&[]);
    let mut a = member(&server, A, &["finance"]).await;
    let mut b = member(&server, B, &["finance"]).await;
    let first = trigger(&server, "finance").await;
    // Never assigned before: ties go to the lowest address.
    assert_eq!(package(&mut a).await, first);
    let second = trigger(&server, "finance").await;
    assert_eq!(package(&mut b).await, second);
    let third = trigger(&server, "finance").await;
    assert_eq!(next_text(&mut a, QUIET).await, None, "A is busy");
    assert_eq!(next_text(&mut b, QUIET).await, None, "B is busy");
    let waiting = job(&server, third).await;
    assert_eq!(waiting["status"], "Pending");
    assert_eq!(waiting["robot_address"], Value::Null);
    assert!(event_types(&waiting).contains(&"job.waiting".to_owned()));
    let finance = pool(&server, "finance").await;
    assert_eq!(finance["free"], 0, "{finance}");
    assert_eq!(finance["waiting_jobs"], 1, "{finance}");

    // B reports: the waiting job is B's at once.
    report(&mut b, second).await;
    assert_eq!(package(&mut b).await, third);
    let sent = job(&server, third).await;
    assert_eq!(sent["robot_address"], B);
    assert_eq!(sent["status"], "Executed");
    assert_eq!(next_text(&mut a, QUIET).await, None);

    let metrics = common::metrics(&server).await;
    assert!(
        metrics.contains("rpa_pool_waiting_jobs{pool=\"finance\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rpa_pool_assignment_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_robot_assigned_least_recently_is_chosen() {
    let server = Server::start(&[]);
    let mut robots = Vec::new();
    for address in [A, B, C] {
        robots.push(member(&server, address, &["p"]).await);
    }
    // A, then B, then C (never assigned, ties by address), then A again.
    for expected in [0, 1, 2, 0, 1] {
        let id = trigger(&server, "p").await;
        assert_eq!(package(&mut robots[expected]).await, id);
        report(&mut robots[expected], id).await;
        wait_job(&server, id, |j| j["status"] == "Succeeded").await;
    }
}

#[tokio::test]
async fn a_declined_job_goes_to_another_robot() {
    let server = Server::start(&[]);
    let mut a = member(&server, A, &["p"]).await;
    let mut b = member(&server, B, &["p"]).await;
    let id = trigger(&server, "p").await;
    assert_eq!(package(&mut a).await, id);
    wait_job(&server, id, |j| j["status"] == "Executed").await;
    send(
        &mut a,
        &json!({"_event": "Decline pkg reception", "value": ""}),
    )
    .await;
    assert_eq!(package(&mut b).await, id, "B gets it after the back-off");
    let moved = wait_job(&server, id, |j| j["robot_address"] == B).await;
    assert_eq!(moved["attempts"], 2);
    assert!(event_types(&moved).contains(&"job.requeued".to_owned()));
    assert_eq!(next_text(&mut a, QUIET).await, None);
}

#[tokio::test]
async fn a_connection_lost_before_confirmation_returns_the_job_to_its_pool() {
    let server = Server::start(&[]);
    let a = member(&server, A, &["p"]).await;
    let id = trigger(&server, "p").await;
    wait_job(&server, id, |j| j["robot_address"] == A).await;
    // A never reads (so never answers the ping behind the package) and goes away.
    drop(a);
    let mut b = member(&server, B, &["p"]).await;
    assert_eq!(package(&mut b).await, id);
    let moved = job(&server, id).await;
    assert_eq!(moved["robot_address"], B);
    assert!(
        event_types(&moved).contains(&"job.requeued".to_owned()),
        "{moved}"
    );
}

#[tokio::test]
async fn the_busy_timeout_frees_a_robot_that_never_reports() {
    let server = Server::start(&["--pool-busy-timeout", "1s"]);
    let mut a = member(&server, A, &["p"]).await;
    let first = trigger(&server, "p").await;
    assert_eq!(package(&mut a).await, first);
    let started = Instant::now();
    let second = trigger(&server, "p").await;
    assert_eq!(package(&mut a).await, second);
    assert!(started.elapsed() >= Duration::from_millis(700));
    // The first job is not changed by the timeout.
    assert_eq!(job(&server, first).await["status"], "Executed");
}

#[tokio::test]
async fn the_report_timeout_fails_a_job_and_frees_its_robot() {
    let server = Server::start(&["--job-report-timeout", "1s"]);
    let mut a = member(&server, A, &["p"]).await;
    let first = trigger(&server, "p").await;
    assert_eq!(package(&mut a).await, first);
    let second = trigger(&server, "p").await;
    assert_eq!(package(&mut a).await, second);
    let failed = job(&server, first).await;
    assert_eq!(failed["status"], "Failed");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("no report within"),
        "{failed}"
    );
    // A late report is kept as a message, and changes nothing.
    report(&mut a, first).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(job(&server, first).await["status"], "Failed");
    let (_, messages) = server.get(&format!("/api/robots/{A}/messages")).await;
    assert!(
        messages["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["value"]["job_id"] == first)
    );
}

#[tokio::test]
async fn a_registration_and_a_membership_change_wake_waiting_jobs() {
    let server = Server::start(&[]);
    let a = member(&server, A, &["p"]).await;
    drop(a);
    server.wait_online(A, false).await;
    let first = trigger(&server, "p").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(job(&server, first).await["status"], "Pending");
    // A registers again: the job is its.
    let mut a = server.robot("robot-a", A).await;
    assert_eq!(package(&mut a).await, first);

    // B is online but in no pool; a job waits until B joins.
    let mut b = server.robot("robot-b", B).await;
    let second = trigger(&server, "p").await;
    assert_eq!(next_text(&mut b, QUIET).await, None);
    let (status, _) = put_pools(&server, B, &["p"]).await;
    assert_eq!(status, 200);
    assert_eq!(package(&mut b).await, second);
}

#[tokio::test]
async fn waiting_pool_jobs_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &[]);
    let mut a = member(&server, A, &["p"]).await;
    let first = trigger(&server, "p").await;
    assert_eq!(package(&mut a).await, first);
    let second = trigger(&server, "p").await;
    assert_eq!(next_text(&mut a, QUIET).await, None);
    server.kill9();
    drop(a);
    let server = Server::start_in(dir.path(), &[]);
    let mut a = server.robot("robot-a", A).await;
    // A is still busy with the first job (sent, unreported): the second waits.
    assert_eq!(job(&server, second).await["status"], "Pending");
    report(&mut a, first).await;
    assert_eq!(package(&mut a).await, second);
    drop(server);
    common::drop_postgres_database(dir.path());
}

#[tokio::test]
async fn two_instances_assign_each_pool_job_once() {
    let shared_dir = tempfile::tempdir().unwrap();
    let Some(url) = common::postgres_database(shared_dir.path()) else {
        eprintln!("RPA_TEST_POSTGRES is not set: several instances need PostgreSQL; not run");
        return;
    };
    let args = ["--database", url.as_str()];
    let one = Server::start(&args);
    let two = Server::start(&args);
    // The pool's robots are split between the instances.
    let mut robots: Vec<(String, Ws)> = Vec::new();
    for (i, server) in [&one, &two, &one, &two].into_iter().enumerate() {
        let address = format!("0C000000000{i}");
        robots.push((address.clone(), member(server, &address, &["shared"]).await));
    }
    const JOBS: usize = 40;
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let server = if i % 2 == 0 { &one } else { &two };
        ids.push(trigger(server, "shared").await);
    }
    // Every robot reports what it gets at once, until every job is done.
    let mut got: HashMap<i64, Vec<String>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < JOBS && Instant::now() < deadline {
        for (address, ws) in &mut robots {
            while let Some((id, _, _)) = next_package(ws, Duration::from_millis(20)).await {
                got.entry(id).or_default().push(address.clone());
                report(ws, id).await;
            }
        }
    }
    assert_eq!(got.len(), JOBS, "every job delivered: {got:?}");
    for (id, to) in &got {
        assert_eq!(to.len(), 1, "job {id} sent once: {to:?}");
    }
    for id in ids {
        let done = wait_job(&one, id, |j| j["status"] == "Succeeded").await;
        assert_eq!(done["attempts"], 1);
    }
    drop((one, two));
    common::drop_postgres_database(shared_dir.path());
}
