#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Issue 13 end to end: the events of jobs, robots and schedules, read in pages and followed
//! live as Server-Sent Events (resumed without gaps or duplicates, slow consumers cut off),
//! retention's floor, the alerts, and, on PostgreSQL, two instances in one stream.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use common::{Server, eventually, metadata, metric_value, metrics, next_package, next_text, send};
use rpa_testkit::{HttpClient, Trigger};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ROBOT: &str = "001AFFDB45C2";
const LIMIT: Duration = Duration::from_secs(20);

fn trigger_in(seconds: i64) -> Value {
    Trigger::new("package-x74s-eg", "cloudinary/studioPackages/pkg1-x74s.std")
        .robot("R", ROBOT)
        .at(Utc::now() + TimeDelta::seconds(seconds))
        .to_json()
}

/// A job far in the future: one `job.created`, nothing after it.
async fn create_later(server: &Server) -> i64 {
    let (status, job) = server.post("/api/jobs", &trigger_in(86_400)).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_i64().unwrap()
}

/// The robot registers once and goes away: triggers for it are accepted and wait.
async fn robot_once(server: &Server) {
    let mut ws = server.robot("R", ROBOT).await;
    ws.close(None).await.unwrap();
    server.wait_online(ROBOT, false).await;
}

async fn page(server: &Server, query: &str) -> (u16, Value) {
    server.get(&format!("/api/events{query}")).await
}

/// Every event the pages hold for `filter` (`type=...&subject=...` or empty), oldest first.
async fn all_events(server: &Server, filter: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = String::new();
    loop {
        let (status, body) = page(server, &format!("?limit=500&after={after}&{filter}")).await;
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().unwrap();
        if items.is_empty() {
            assert_eq!(body["next_after"], Value::Null);
            return events;
        }
        after = body["next_after"].as_str().unwrap().to_owned();
        assert_eq!(items.last().unwrap()["id"], after.as_str());
        events.extend(items.iter().cloned());
    }
}

fn id_of(event: &Value) -> i64 {
    event["id"].as_str().unwrap().parse().unwrap()
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect()
}

async fn last_id(server: &Server) -> i64 {
    all_events(server, "").await.last().map_or(0, id_of)
}

/// Waits until the pages for `filter` hold `count` events, and returns them.
async fn wait_for(server: &Server, filter: &str, count: usize) -> Vec<Value> {
    eventually(LIMIT, || async {
        let events = all_events(server, filter).await;
        (events.len() >= count).then_some(events)
    })
    .await
}

/// An event of a stream.
#[derive(Debug, Clone)]
struct SseEvent {
    id: i64,
    kind: String,
    data: Value,
}

/// A Server-Sent Events stream read from a plain socket: the answer's head, then the chunked
/// body taken apart into events and comments as it arrives.
struct Sse {
    stream: TcpStream,
    raw: Vec<u8>,
    text: String,
    ended: bool,
    comments: Vec<String>,
}

impl Sse {
    async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let socket = TcpSocket::new_v4().unwrap();
        Sse::open_on(socket, addr, path, headers)
            .await
            .unwrap_or_else(|(status, body)| panic!("{path}: {status} {body}"))
    }

    /// Opens the stream, or returns the status and body of the answer that is not one.
    async fn open_on(
        socket: TcpSocket,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Sse, (u16, Value)> {
        let mut stream = socket.connect(addr).await.unwrap();
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let deadline = tokio::time::Instant::now() + LIMIT;
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut buffer = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
                .await
                .expect("the answer's head within the limit")
                .unwrap();
            assert!(n > 0, "closed before the head");
            raw.extend_from_slice(&buffer[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        raw.drain(..head_end);
        if status != 200 {
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().unwrap());
            while raw.len() < length {
                let mut buffer = [0u8; 4096];
                let n = stream.read(&mut buffer).await.unwrap();
                assert!(n > 0);
                raw.extend_from_slice(&buffer[..n]);
            }
            return Err((status, serde_json::from_slice(&raw).unwrap_or(Value::Null)));
        }
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let mut sse = Sse {
            stream,
            raw,
            text: String::new(),
            ended: false,
            comments: Vec::new(),
        };
        sse.decode();
        Ok(sse)
    }

    /// Moves whole chunks from `raw` to `text`.
    fn decode(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).to_string();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                self.ended = true;
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.text
                .push_str(std::str::from_utf8(&self.raw[start..start + size]).unwrap());
            self.raw.drain(..start + size + 2);
        }
    }

    /// The next whole block (an event, or comments) already received.
    fn block(&mut self) -> Option<String> {
        let end = self.text.find("\n\n")?;
        let block = self.text[..end].to_owned();
        self.text.drain(..end + 2);
        Some(block)
    }

    /// The next event within `limit`, keeping the comments met on the way; `None` when the
    /// stream ended or stayed silent.
    async fn next(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(block) = self.block() {
                if let Some(event) = self.parse(&block) {
                    return Some(event);
                }
            }
            if self.ended {
                return None;
            }
            let mut buffer = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buffer)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => {
                    // Closed by the server: what was complete has been read.
                    self.ended = true;
                }
                Ok(Ok(n)) => {
                    self.raw.extend_from_slice(&buffer[..n]);
                    self.decode();
                }
            }
        }
    }

    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let (mut id, mut kind, mut data) = (None, None, None);
        for line in block.lines() {
            if let Some(comment) = line.strip_prefix(':') {
                self.comments.push(comment.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("id: ") {
                id = Some(value.parse().unwrap());
            } else if let Some(value) = line.strip_prefix("event: ") {
                kind = Some(value.to_owned());
            } else if let Some(value) = line.strip_prefix("data: ") {
                assert!(data.is_none(), "two data lines: {block}");
                data = Some(serde_json::from_str(value).unwrap());
            } else {
                panic!("an unexpected line in {block:?}");
            }
        }
        let id = id?;
        let event = SseEvent {
            id,
            kind: kind.expect("an event line"),
            data: data.expect("a data line"),
        };
        assert_eq!(event.data["id"], id.to_string());
        assert_eq!(event.data["type"], event.kind.as_str());
        Some(event)
    }

    /// `count` events within `limit` (fewer if the stream ends or stays silent).
    async fn take(&mut self, count: usize, limit: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + limit;
        let mut events = Vec::new();
        while events.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(event) => events.push(event),
                None => break,
            }
        }
        events
    }
}

fn stream_ids(events: &[SseEvent]) -> Vec<i64> {
    events.iter().map(|event| event.id).collect()
}

#[tokio::test]
async fn a_jobs_life_is_told_in_order_with_its_state_after_each_change() {
    let server = Server::start(&[]);
    let mut ws = server.robot("R", ROBOT).await;
    let (status, job) = server.post("/api/jobs", &trigger_in(0)).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    let (got, _, _) = next_package(&mut ws, LIMIT).await.unwrap();
    assert_eq!(got, id);
    let sent = wait_for(&server, &format!("subject=jobs/{id}"), 2).await;
    assert_eq!(types(&sent), ["job.created", "job.sent"]);
    send(
        &mut ws,
        &json!({"_event": "client robot message", "value": {"job_id": id, "status": "success"}}),
    )
    .await;
    let events = wait_for(&server, &format!("subject=jobs/{id}"), 3).await;
    assert_eq!(types(&events), ["job.created", "job.sent", "job.succeeded"]);
    let statuses: Vec<&Value> = events.iter().map(|e| &e["data"]["job"]["status"]).collect();
    assert_eq!(statuses, ["Pending", "Executed", "Succeeded"]);
    assert_eq!(events[1]["data"]["attempt"], 1);
    assert!(events[0]["data"].get("attempt").is_none());
    for event in &events {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "/socket-server");
        assert_eq!(event["subject"], format!("jobs/{id}"));
        assert_eq!(event["datacontenttype"], "application/json");
        assert!(event["data"]["reason"].is_string(), "{event}");
        assert_eq!(event["data"]["job"]["id"], id);
        assert_eq!(
            event["data"]["job"]["package"]["package_name"],
            "package-x74s-eg"
        );
        let time = event["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == "2026-07-15T09:00:00.000000Z".len());
    }
    let ids: Vec<i64> = events.iter().map(id_of).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // The job's own history lists the same events.
    let (_, detail) = server.get(&format!("/api/jobs/{id}")).await;
    let history: Vec<&Value> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["type"])
        .collect();
    assert_eq!(history, ["job.created", "job.sent", "job.succeeded"]);
}

#[tokio::test]
async fn robots_are_told_registered_online_and_offline_but_not_for_a_replacement_or_metadata() {
    let server = Server::start(&[]);
    let mut first = server.robot("R", ROBOT).await;
    let subject = format!("subject=robots/{ROBOT}");
    let events = wait_for(&server, &subject, 2).await;
    assert_eq!(types(&events), ["robot.registered", "robot.online"]);
    assert_eq!(events[1]["data"]["robot"]["online"], true);
    assert_eq!(events[1]["data"]["robot"]["robot_address"], ROBOT);

    // Metadata again on the live connection: nothing to tell.
    send(&mut first, &metadata("_event", "R", ROBOT)).await;
    next_text(&mut first, Duration::from_millis(300)).await;
    // A newer connection replaces it: online again, "replaced", and no offline in between.
    let mut second = server.connect("/").await;
    send(&mut second, &metadata("_event", "R", ROBOT)).await;
    let events = wait_for(&server, &subject, 3).await;
    assert_eq!(
        types(&events),
        ["robot.registered", "robot.online", "robot.online"]
    );
    assert_eq!(events[2]["data"]["reason"], "replaced");
    // The replaced socket closing later takes nothing offline.
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(all_events(&server, &subject).await.len(), 3);

    second.close(None).await.unwrap();
    let events = wait_for(&server, &subject, 4).await;
    assert_eq!(types(&events)[3], "robot.offline");
    assert_eq!(events[3]["data"]["robot"]["online"], false);
    let _third = server.robot("R", "00:1a:ff:db:45:c2").await;
    let events = wait_for(&server, &subject, 5).await;
    assert_eq!(types(&events)[4], "robot.online");
    // The subject is normalised as the robot's address is everywhere.
    let other_form = all_events(&server, "subject=robots/00-1A-FF-DB-45-C2").await;
    assert_eq!(other_form, events);
}

#[tokio::test]
async fn pages_follow_next_after_and_select_by_type_and_subject() {
    let server = Server::start(&[]);
    robot_once(&server).await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(create_later(&server).await);
    }
    let (status, cancelled) = server
        .post(&format!("/api/jobs/{}/cancel", jobs[0]), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let all = wait_for(&server, "", 7).await;
    assert_eq!(
        types(&all),
        [
            "robot.registered",
            "robot.online",
            "robot.offline",
            "job.created",
            "job.created",
            "job.created",
            "job.cancelled"
        ]
    );

    // Pages of two, each after the last id of the one before.
    let mut paged = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let (status, body) = page(&server, &query).await;
        assert_eq!(status, 200);
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        if items.is_empty() {
            assert_eq!(body["next_after"], Value::Null);
            break;
        }
        paged.extend(items.iter().cloned());
        query = format!("?limit=2&after={}", body["next_after"].as_str().unwrap());
    }
    assert_eq!(paged, all);

    // Types, with a prefix; subjects; both.
    let robot_events = all_events(&server, "type=robot.*").await;
    assert_eq!(types(&robot_events), types(&all[..3]));
    let chosen = all_events(&server, "type=job.cancelled,robot.online").await;
    assert_eq!(types(&chosen), ["robot.online", "job.cancelled"]);
    let about = all_events(
        &server,
        &format!("subject=jobs/{},jobs/{}", jobs[0], jobs[2]),
    )
    .await;
    assert_eq!(
        types(&about),
        ["job.created", "job.created", "job.cancelled"]
    );
    let both = all_events(
        &server,
        &format!("type=job.created&subject=jobs/{}", jobs[0]),
    )
    .await;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0]["subject"], format!("jobs/{}", jobs[0]));
    assert!(all_events(&server, "type=schedule.*").await.is_empty());
    // The cancelled job's event shows it cancelled; its creation shows it pending.
    assert_eq!(about[2]["data"]["job"]["status"], "Cancelled");
    assert_eq!(about[0]["data"]["job"]["status"], "Pending");

    // Bad parameters are problems.
    for (query, status, code) in [
        ("?after=x", 400, "bad_cursor"),
        ("?after=-1", 400, "bad_cursor"),
        ("?limit=0", 400, "bad_limit"),
        ("?limit=501", 400, "bad_limit"),
        ("?type=job.*.x", 422, "validation_failed"),
        ("?subject=jobs", 422, "validation_failed"),
    ] {
        let (answered, problem) = page(&server, query).await;
        assert_eq!(answered, status, "{query}: {problem}");
        assert_eq!(problem["code"], code, "{query}: {problem}");
    }
}

#[tokio::test]
async fn a_refused_request_writes_no_event() {
    let server = Server::start(&[]);
    robot_once(&server).await;
    let job = create_later(&server).await;
    let (status, _) = server
        .post(&format!("/api/jobs/{job}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let before = wait_for(&server, "", 5).await;

    let mut invalid = trigger_in(60);
    invalid["Schedule"] = json!({"date": "31-2", "time": "9:00:00"});
    let (status, _) = server.post("/api/jobs", &invalid).await;
    assert_eq!(status, 422);
    let (status, _) = server.post("/api/jobs/999999/cancel", &json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = server
        .post(&format!("/api/jobs/{job}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409);
    let mut stranger = trigger_in(60);
    stranger["Robot"]["robot_address"] = json!("00000000000F");
    let (status, _) = server.post("/api/jobs", &stranger).await;
    assert_eq!(status, 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(all_events(&server, "").await, before);
}

#[tokio::test]
async fn a_stream_starts_at_the_next_event_and_sends_what_the_pages_hold() {
    let server = Server::start(&[]);
    robot_once(&server).await;
    let old = create_later(&server).await;
    let mut sse = Sse::open(server.addr, "/api/events", &[]).await;
    let mut filtered = Sse::open(server.addr, "/api/events?type=job.*&subject=robots/X", &[]).await;
    let mut jobs_only = Sse::open(server.addr, "/api/events?type=job.created", &[]).await;
    let (status, cancelled) = server
        .post(&format!("/api/jobs/{old}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let new = create_later(&server).await;

    let live = sse.take(2, LIMIT).await;
    assert_eq!(
        live.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["job.cancelled", "job.created"]
    );
    assert_eq!(live[0].data["subject"], format!("jobs/{old}"));
    assert_eq!(live[1].data["subject"], format!("jobs/{new}"));
    // The same documents as the pages'.
    let pages = all_events(&server, "").await;
    for event in &live {
        let paged = pages.iter().find(|p| id_of(p) == event.id).unwrap();
        assert_eq!(&event.data, paged);
    }
    let created = jobs_only.take(1, LIMIT).await;
    assert_eq!(created[0].id, live[1].id);
    assert!(sse.next(Duration::from_millis(300)).await.is_none());
    assert!(jobs_only.next(Duration::from_millis(100)).await.is_none());
    assert!(filtered.next(Duration::from_millis(100)).await.is_none());

    // From a cursor: what followed it, from the database, then live.
    let first = id_of(&pages[0]);
    let mut resumed = Sse::open(server.addr, &format!("/api/events?after={first}"), &[]).await;
    let backlog = resumed.take(pages.len() - 1, LIMIT).await;
    assert_eq!(
        stream_ids(&backlog),
        pages[1..].iter().map(id_of).collect::<Vec<_>>()
    );
    let newest = create_later(&server).await;
    let next = resumed.take(1, LIMIT).await;
    assert_eq!(next[0].data["subject"], format!("jobs/{newest}"));

    // Open streams are counted, and no longer once closed.
    let text = metrics(&server).await;
    assert_eq!(metric_value(&text, "rpa_event_stream_subscribers"), 4.0);
    assert!(metric_value(&text, "rpa_events_written_total") >= 7.0);
    drop((sse, filtered, jobs_only, resumed));
    eventually(LIMIT, || async {
        (metric_value(&metrics(&server).await, "rpa_event_stream_subscribers") == 0.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stream_resumed_with_last_event_id_misses_nothing_and_repeats_nothing() {
    let server = Server::start(&[]);
    robot_once(&server).await;
    let start = last_id(&server).await;
    const JOBS: usize = 300;
    let addr = server.addr;
    let writer = tokio::spawn(async move {
        let mut client = HttpClient::new(addr);
        for _ in 0..JOBS {
            let answer = client.post("/api/jobs", &trigger_in(86_400)).await.unwrap();
            assert_eq!(answer.status, 201, "{}", answer.text());
        }
    });

    // Read a few, hang up, come back with the last id received; again and again, while the
    // events keep coming.
    let mut received: Vec<SseEvent> = Vec::new();
    let mut reconnections = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.len() < JOBS {
        assert!(Instant::now() < deadline, "only {} events", received.len());
        let last = received.last().map_or(start, |event| event.id).to_string();
        // The header wins over `after`.
        let mut sse = Sse::open(
            server.addr,
            "/api/events?after=0",
            &[("Last-Event-ID", &last)],
        )
        .await;
        let wanted = [1, 17, 40, 3, 90][reconnections % 5].min(JOBS - received.len());
        received.extend(sse.take(wanted, Duration::from_secs(5)).await);
        reconnections += 1;
    }
    writer.await.unwrap();
    assert!(reconnections > 5);
    let ids = stream_ids(&received);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order or twice");
    let written: Vec<i64> = all_events(&server, "")
        .await
        .iter()
        .map(id_of)
        .filter(|id| *id > start)
        .collect();
    assert_eq!(ids, written);
    assert!(received.iter().all(|event| event.kind == "job.created"));
}

#[tokio::test]
async fn a_consumer_that_does_not_read_is_disconnected_and_resumes_where_it_stopped() {
    let server = Server::start(&[]);
    robot_once(&server).await;
    let start = last_id(&server).await;
    // A small receive window, so that the server's side fills up soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut sse = Sse::open_on(socket, server.addr, "/api/events", &[])
        .await
        .unwrap();

    // Far more than the stream buffers for one consumer (4 MiB), and more than the sockets
    // between hold.
    const JOBS: usize = 800;
    const WRITERS: usize = 8;
    let padding = "x".repeat(30_000);
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let addr = server.addr;
        let body = Trigger::new("package-x74s-eg", "studio/pkg.std")
            .robot("R", ROBOT)
            .package_field("padding", padding.as_str())
            .at(Utc::now() + TimeDelta::days(1))
            .to_json();
        writers.push(tokio::spawn(async move {
            let mut client = HttpClient::new(addr);
            for _ in 0..JOBS / WRITERS {
                let answer = client.post("/api/jobs", &body).await.unwrap();
                assert_eq!(answer.status, 201, "{}", answer.text());
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    eventually(LIMIT, || async {
        (metric_value(
            &metrics(&server).await,
            "rpa_event_stream_slow_closed_total",
        ) == 1.0)
            .then_some(())
    })
    .await;

    // What was buffered arrives, then the stream ends: fewer than were written.
    let first = sse.take(JOBS, LIMIT).await;
    assert!(sse.ended, "the stream did not end");
    assert!(!first.is_empty());
    assert!(first.len() < JOBS, "all {} arrived", first.len());
    let last = first.last().unwrap().id.to_string();
    let mut resumed = Sse::open(server.addr, "/api/events", &[("Last-Event-ID", &last)]).await;
    let rest = resumed.take(JOBS - first.len(), LIMIT).await;
    let ids: Vec<i64> = stream_ids(&first)
        .into_iter()
        .chain(stream_ids(&rest))
        .collect();
    let written: Vec<i64> = all_events(&server, "")
        .await
        .iter()
        .map(id_of)
        .filter(|id| *id > start)
        .collect();
    assert_eq!(written.len(), JOBS);
    assert_eq!(ids, written);
    assert!(resumed.next(Duration::from_millis(200)).await.is_none());
    assert!(!resumed.ended);
}

#[tokio::test]
async fn resuming_below_what_retention_trimmed_is_gone() {
    let server = Server::start(&["--event-retention", "1s", "--retention-interval", "1s"]);
    robot_once(&server).await;
    let job = create_later(&server).await;
    let trimmed_to = wait_for(&server, "", 4).await;
    let last = id_of(trimmed_to.last().unwrap());
    // Retention's first pass comes a few seconds after the start.
    let gone = eventually(LIMIT, || async {
        let (status, problem) = page(&server, "?after=0").await;
        (status == 410).then_some(problem)
    })
    .await;
    assert_eq!(gone["code"], "events_trimmed");
    assert_eq!(gone["status"], 410);
    // At the floor, or without a cursor: what is kept (nothing, yet).
    let (status, body) = page(&server, &format!("?after={last}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"], json!([]));
    let (status, body) = page(&server, "").await;
    assert_eq!(status, 200);
    assert_eq!(body["items"], json!([]));
    // A stream from below is refused the same way, whichever way the cursor comes.
    for headers in [vec![("Last-Event-ID", "1")], vec![]] {
        let socket = TcpSocket::new_v4().unwrap();
        let path = if headers.is_empty() {
            "/api/events?after=1"
        } else {
            "/api/events"
        };
        let Err((status, problem)) = Sse::open_on(socket, server.addr, path, &headers).await else {
            panic!("a stream from below the floor");
        };
        assert_eq!(status, 410);
        assert_eq!(problem["code"], "events_trimmed");
    }
    // The job's own history is kept with the job.
    let (_, detail) = server.get(&format!("/api/jobs/{job}")).await;
    assert_eq!(detail["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_robot_offline_too_long_is_told_unreachable_once_per_outage() {
    let server = Server::start(&["--alert-robot-offline-after", "1s"]);
    let subject = format!("type=robot.unreachable&subject=robots/{ROBOT}");
    let mut sse = Sse::open(
        server.addr,
        "/api/events?type=robot.unreachable,robot.offline",
        &[],
    )
    .await;
    for outage in 1..=2 {
        robot_once(&server).await;
        let told = sse.take(2, LIMIT).await;
        assert_eq!(
            told.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["robot.offline", "robot.unreachable"]
        );
        let offline_at: chrono::DateTime<Utc> =
            told[0].data["time"].as_str().unwrap().parse().unwrap();
        let unreachable_at: chrono::DateTime<Utc> =
            told[1].data["time"].as_str().unwrap().parse().unwrap();
        assert!(unreachable_at - offline_at >= TimeDelta::seconds(1));
        assert!(
            told[1].data["data"]["reason"]
                .as_str()
                .unwrap()
                .contains("offline for more than 1 s"),
            "{}",
            told[1].data
        );
        assert_eq!(told[1].data["data"]["robot"]["online"], false);
        // Once per outage: nothing more while it stays away.
        assert!(sse.next(Duration::from_millis(2_500)).await.is_none());
        assert_eq!(all_events(&server, &subject).await.len(), outage);
    }
}

#[tokio::test]
async fn a_job_due_too_long_without_its_robot_is_told_overdue_once() {
    let server = Server::start(&["--alert-job-overdue-after", "1s"]);
    robot_once(&server).await;
    let start = last_id(&server).await;
    let (status, job) = server.post("/api/jobs", &trigger_in(0)).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    // Between them, the job waits for its robot (job.waiting, in its history).
    let told_types = "type=job.created,job.overdue,job.sent";
    let mut sse = Sse::open(
        server.addr,
        &format!("/api/events?after={start}&subject=jobs/{id}&{told_types}"),
        &[],
    )
    .await;
    let told = sse.take(2, LIMIT).await;
    assert_eq!(told[0].kind, "job.created");
    assert_eq!(told[1].kind, "job.overdue");
    assert_eq!(told[1].data["data"]["job"]["status"], "Pending");
    assert_eq!(told[1].data["data"]["job"]["attempts"], 0);
    let created_at: chrono::DateTime<Utc> = job["run_at"].as_str().unwrap().parse().unwrap();
    let overdue_at: chrono::DateTime<Utc> = told[1].data["time"].as_str().unwrap().parse().unwrap();
    assert!(overdue_at - created_at >= TimeDelta::seconds(1));
    assert!(sse.next(Duration::from_millis(2_500)).await.is_none());
    // Its robot comes back: it is sent, and nothing is told overdue again.
    let mut ws = server.robot("R", ROBOT).await;
    let (got, _, _) = next_package(&mut ws, LIMIT).await.unwrap();
    assert_eq!(got, id);
    let sent = sse.take(1, LIMIT).await;
    assert_eq!(sent[0].kind, "job.sent");
    let events = all_events(&server, &format!("subject=jobs/{id}&{told_types}")).await;
    assert_eq!(types(&events), ["job.created", "job.overdue", "job.sent"]);
}

#[tokio::test]
async fn a_schedule_is_told_created_and_deleted() {
    let server = Server::start(&[]);
    robot_once(&server).await;
    let body = Trigger::new("package-x74s-eg", "studio/pkg.std")
        .robot("R", ROBOT)
        .schedule(json!({"cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"}))
        .to_json();
    let (status, schedule) = server.post("/api/jobs", &body).await;
    assert_eq!(status, 201, "{schedule}");
    let id = schedule["id"].as_i64().unwrap();
    let (status, _, text) = common::http_raw(
        server.addr,
        "DELETE",
        &format!("/api/schedules/{id}"),
        None,
        &[],
    )
    .await;
    assert!((200..300).contains(&status), "{status} {text}");
    let events = wait_for(&server, &format!("subject=schedules/{id}"), 2).await;
    assert_eq!(types(&events), ["schedule.created", "schedule.deleted"]);
    assert_eq!(events[0]["data"]["schedule"]["id"], id);
    assert_eq!(events[0]["data"]["schedule"]["active"], true);
    assert_eq!(events[0]["data"]["schedule"]["cron"], "0 9 * * MON-FRI");
    assert_eq!(events[1]["data"]["schedule"]["active"], false);
    assert_eq!(events[1]["data"]["schedule"]["next_occurrences"], json!([]));
    assert_eq!(
        types(&all_events(&server, "type=schedule.*").await),
        ["schedule.created", "schedule.deleted"]
    );
}

#[tokio::test]
async fn with_an_api_token_the_stream_needs_it() {
    let server = Server::start(&["--api-token", "s3cret-token"]);
    let socket = TcpSocket::new_v4().unwrap();
    let Err((status, problem)) = Sse::open_on(socket, server.addr, "/api/events", &[]).await else {
        panic!("a stream without the token");
    };
    assert_eq!(status, 401, "{problem}");
    let mut sse = Sse::open(
        server.addr,
        "/api/events",
        &[("Authorization", "Bearer s3cret-token")],
    )
    .await;
    // The API needs the token, robots do not (no --robot-token).
    let mut ws = server.connect("/").await;
    send(&mut ws, &metadata("_event", "R", ROBOT)).await;
    let told = sse.take(2, LIMIT).await;
    assert_eq!(told[0].kind, "robot.registered");
    assert_eq!(told[1].kind, "robot.online");
}

/// Two instances on one PostgreSQL database: each one's stream holds both one's events, in id
/// order, none missing, promptly (the other's commits arrive through the database's notices).
#[tokio::test]
async fn two_instances_stream_each_others_events_in_order() {
    let shared_dir = tempfile::tempdir().unwrap();
    let Some(url) = common::postgres_database(shared_dir.path()) else {
        eprintln!("RPA_TEST_POSTGRES is not set: several instances need PostgreSQL; not run");
        return;
    };
    let args = ["--database", url.as_str()];
    let a = Server::start(&args);
    let b = Server::start(&args);
    robot_once(&a).await;
    let start = last_id(&a).await;
    let mut streams = Vec::new();
    for server in [&a, &b] {
        streams.push(Sse::open(server.addr, &format!("/api/events?after={start}"), &[]).await);
    }

    // One event alone, through B: A's stream has it well before its 1 s safety poll would.
    let first = create_later(&b).await;
    let began = Instant::now();
    let told = streams[0].take(1, LIMIT).await;
    assert_eq!(told[0].data["subject"], format!("jobs/{first}"));
    let latency = began.elapsed();

    const PER_INSTANCE: usize = 100;
    let mut writers = Vec::new();
    for server in [&a, &b] {
        let addr = server.addr;
        writers.push(tokio::spawn(async move {
            let mut client = HttpClient::new(addr);
            for _ in 0..PER_INSTANCE {
                let answer = client.post("/api/jobs", &trigger_in(86_400)).await.unwrap();
                assert_eq!(answer.status, 201, "{}", answer.text());
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let written: Vec<i64> = all_events(&a, "")
        .await
        .iter()
        .map(id_of)
        .filter(|id| *id > start)
        .collect();
    assert_eq!(written.len(), 2 * PER_INSTANCE + 1);
    for (n, stream) in streams.iter_mut().enumerate() {
        let mut got = if n == 0 { told.clone() } else { Vec::new() };
        got.extend(stream.take(written.len() - got.len(), LIMIT).await);
        assert_eq!(stream_ids(&got), written, "instance {n}");
        let subjects: BTreeSet<&str> = got
            .iter()
            .map(|event| event.data["subject"].as_str().unwrap())
            .collect();
        assert_eq!(subjects.len(), written.len());
    }
    assert!(
        latency < Duration::from_millis(900),
        "the other instance's event took {latency:?}"
    );
}
