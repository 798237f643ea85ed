#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Webhooks end to end (docs/EVENTS.md): a receiver on loopback, inside the test, checks every
//! delivery's signature with an implementation of its own (the `hmac` and `sha2` crates, not the
//! server's ring), answers as each test tells it (failing on purpose for a while), and records
//! what arrived when. Checked: at least once and in order per subject, the retry schedule, an
//! owed delivery made after a `kill -9`, disabling and enabling, the chat format, an HTTPS
//! receiver with `--webhook-ca-file`, validation, the loopback rule, secrets kept out of answers
//! and the log; and, on PostgreSQL, two instances delivering each event exactly once.

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::{Server, eventually, http, http_raw};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rpa_testkit::Trigger;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const ROBOT: &str = "001AFFDB45C2";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    timestamp: i64,
    body: Value,
    at: Instant,
    /// What the receiver answered.
    status: u16,
}

impl Delivery {
    fn subject(&self) -> String {
        self.body["subject"].as_str().unwrap_or_default().to_owned()
    }

    fn kind(&self) -> String {
        self.body["type"].as_str().unwrap_or_default().to_owned()
    }
}

/// Decides the answer to each request: (its body, how many requests came before) → status.
type Answer = dyn Fn(&Value, usize) -> u16 + Send + Sync;

struct Receiver {
    addr: SocketAddr,
    /// Closed: requests are recorded, then wait (up to the server's 10 s) for their answer.
    gate: tokio::sync::watch::Sender<bool>,
    seen: Arc<Mutex<Vec<Delivery>>>,
    answer: Arc<Mutex<Arc<Answer>>>,
    /// Requests whose signature did not verify (or that lacked the headers).
    forged: Arc<Mutex<Vec<String>>>,
}

/// The Standard Webhooks signature, computed here independently of the server: HMAC-SHA256
/// keyed with the base64-decoded secret after `whsec_`.
fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

impl Receiver {
    /// A receiver on loopback (plain HTTP, or HTTPS with `tls`) checking signatures with
    /// `secret`, answering 204 until told otherwise.
    async fn start(secret: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Mutex<Arc<Answer>>> = Arc::new(Mutex::new(Arc::new(|_: &Value, _| 204)));
        let forged = Arc::new(Mutex::new(Vec::new()));
        let gate = tokio::sync::watch::Sender::new(true);
        let (s, a, f, secret, g) = (
            Arc::clone(&seen),
            Arc::clone(&answer),
            Arc::clone(&forged),
            secret.to_owned(),
            gate.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, a, f, secret, tls, g) = (
                    Arc::clone(&s),
                    Arc::clone(&a),
                    Arc::clone(&f),
                    secret.clone(),
                    tls.clone(),
                    g.clone(),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<_>| {
                        let (s, a, f, secret) = (
                            Arc::clone(&s),
                            Arc::clone(&a),
                            Arc::clone(&f),
                            secret.clone(),
                        );
                        let mut gate = g.subscribe();
                        async move {
                            let status = receive(request, &secret, &s, &a, &f).await;
                            let _ = gate.wait_for(|open| *open).await;
                            let mut response = Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(config) => {
                            let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                            else {
                                return;
                            };
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            gate,
            seen,
            answer,
            forged,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer(&self, answer: impl Fn(&Value, usize) -> u16 + Send + Sync + 'static) {
        *self.answer.lock().unwrap() = Arc::new(answer);
    }

    fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `check` holds for what arrived, at most `limit`.
    async fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.seen();
            if check(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; got {:?}",
                seen.iter()
                    .map(|d| (d.id.clone(), d.kind(), d.subject(), d.status))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn assert_all_signed(&self) {
        let forged = self.forged.lock().unwrap();
        assert!(
            forged.is_empty(),
            "signatures that do not verify: {forged:?}"
        );
    }
}

async fn receive(
    request: Request<hyper::body::Incoming>,
    secret: &str,
    seen: &Mutex<Vec<Delivery>>,
    answer: &Mutex<Arc<Answer>>,
    forged: &Mutex<Vec<String>>,
) -> u16 {
    let at = Instant::now();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (id, timestamp, signature, kind) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        header("content-type"),
    );
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let (Some(id), Some(timestamp), Some(signature)) = (id, timestamp, signature) else {
        forged.lock().unwrap().push("headers missing".to_owned());
        return 400;
    };
    if signature != expected_signature(secret, &id, &timestamp, &body)
        || kind.as_deref() != Some("application/json")
    {
        forged.lock().unwrap().push(format!("{id}: {signature}"));
        return 401;
    }
    let timestamp: i64 = timestamp.parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (timestamp - now).abs() <= 2,
        "timestamp {timestamp} at {now}"
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    let mut seen = seen.lock().unwrap();
    let answer = Arc::clone(&answer.lock().unwrap());
    let status = answer(&body, seen.len());
    seen.push(Delivery {
        id,
        timestamp,
        body,
        at,
        status,
    });
    status
}

async fn create_webhook(server: &Server, body: Value) -> Value {
    let (status, webhook) = server.post("/api/webhooks", &body).await;
    assert_eq!(status, 201, "{webhook}");
    webhook
}

/// A job for the robot, due in a year (it stays pending): its `job.created` is an event.
async fn create_job(server: &Server) -> i64 {
    let trigger = Trigger::new("webhook-pkg", "studio/webhook.std")
        .robot("R", ROBOT)
        .at(chrono::Utc::now() + chrono::TimeDelta::days(365))
        .to_json();
    let (status, job) = server.post("/api/jobs", &trigger).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_i64().unwrap()
}

async fn cancel(server: &Server, job: i64) {
    let (status, answer) = server
        .post(&format!("/api/jobs/{job}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{answer}");
}

async fn deliveries(server: &Server, webhook: i64) -> Vec<Value> {
    let (status, page) = server
        .get(&format!("/api/webhooks/{webhook}/deliveries?limit=500"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// A registered robot, so that jobs can be triggered for it (its socket may close: the robot
/// stays known).
async fn robot(server: &Server) {
    let ws = server.robot("R", ROBOT).await;
    drop(ws);
}

#[tokio::test]
async fn deliveries_are_signed_in_order_per_subject_and_retried_on_schedule() {
    let receiver = Receiver::start(SECRET, None).await;
    let server = Server::start(&[]);
    robot(&server).await;
    let webhook = create_webhook(
        &server,
        json!({"url": receiver.url("/events?source=rpa"), "types": ["job.*"], "secret": SECRET}),
    )
    .await;
    let id = webhook["id"].as_i64().unwrap();
    // The first subject to arrive is refused three times (500, 500, 503), then taken.
    let first_subject: Arc<Mutex<Option<(String, usize)>>> = Arc::new(Mutex::new(None));
    let state = Arc::clone(&first_subject);
    receiver.answer(move |body, _| {
        let subject = body["subject"].as_str().unwrap_or_default().to_owned();
        let mut state = state.lock().unwrap();
        let (first, count) = state.get_or_insert_with(|| (subject.clone(), 0));
        if *first != subject {
            return 204;
        }
        *count += 1;
        match *count {
            1 | 2 => 500,
            3 => 503,
            _ => 204,
        }
    });
    let first = create_job(&server).await;
    let held = format!("jobs/{first}");
    cancel(&server, first).await;
    let second = create_job(&server).await;
    cancel(&server, second).await;
    let other = format!("jobs/{second}");

    // The other job's events arrive at once, in order, though the first job's are held back.
    let seen = receiver
        .wait_for(Duration::from_secs(5), "the second job's events", |seen| {
            seen.iter().filter(|d| d.subject() == other).count() == 2
        })
        .await;
    let others: Vec<String> = seen
        .iter()
        .filter(|d| d.subject() == other)
        .map(Delivery::kind)
        .collect();
    assert_eq!(others, ["job.created", "job.cancelled"]);
    assert!(
        seen.iter().filter(|d| d.subject() == held).count() <= 2,
        "the held subject's retries are spaced"
    );

    // The first job's creation: four attempts 1 s, 2 s and 4 s apart (each ±25 %), then its
    // cancellation, once, after it.
    let seen = receiver
        .wait_for(Duration::from_secs(15), "the first job's events", |seen| {
            seen.iter()
                .any(|d| d.subject() == held && d.kind() == "job.cancelled")
        })
        .await;
    let mine: Vec<&Delivery> = seen.iter().filter(|d| d.subject() == held).collect();
    let kinds: Vec<String> = mine.iter().map(|d| d.kind()).collect();
    assert_eq!(
        kinds,
        [
            "job.created",
            "job.created",
            "job.created",
            "job.created",
            "job.cancelled"
        ]
    );
    assert!(
        mine[..4].iter().all(|d| d.id == mine[0].id),
        "one webhook-id"
    );
    // webhook-timestamp is each attempt's own.
    assert!(mine[3].timestamp >= mine[0].timestamp + 5, "{mine:?}");
    assert_eq!(mine[0].id, mine[0].body["id"].as_str().unwrap());
    for (n, nominal) in [1.0_f64, 2.0, 4.0].into_iter().enumerate() {
        let gap = mine[n + 1].at.duration_since(mine[n].at).as_secs_f64();
        assert!(
            gap >= nominal * 0.75 - 0.05 && gap <= nominal * 1.25 + 0.25,
            "wait {} was {gap:.3} s, nominal {nominal} s",
            n + 1
        );
    }
    assert!(mine[4].id.parse::<i64>().unwrap() > mine[0].id.parse::<i64>().unwrap());
    receiver.assert_all_signed();

    // The body is the CloudEvent.
    let event = &mine[4].body;
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["source"], "/socket-server");
    assert_eq!(event["data"]["job"]["id"], first);
    assert_eq!(event["data"]["job"]["status"], "Cancelled");

    // The attempts as /deliveries lists them, newest first: every failure and retry (a first
    // attempt that succeeded at most once a second).
    let creation = mine[0].id.clone();
    let listed = eventually(Duration::from_secs(5), || async {
        let listed = deliveries(&server, id).await;
        let retried = listed
            .iter()
            .filter(|d| d["event_id"] == creation.as_str())
            .count();
        (retried == 4).then_some(listed)
    })
    .await;
    let attempts: Vec<(i64, &str, Value)> = listed
        .iter()
        .rev()
        .filter(|d| d["event_id"] == creation.as_str())
        .map(|d| {
            (
                d["attempt"].as_i64().unwrap(),
                d["outcome"].as_str().unwrap(),
                d["http_status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (1, "failed", json!(500)),
            (2, "failed", json!(500)),
            (3, "failed", json!(503)),
            (4, "delivered", json!(204)),
        ]
    );
    assert!(listed.iter().all(|d| d["duration_ms"].is_i64()));
    let metrics = common::metrics(&server).await;
    assert!(
        common::metric_value(&metrics, "rpa_webhook_deliveries_total{outcome=\"failed\"}") == 3.0
    );
    assert!(
        common::metric_value(
            &metrics,
            "rpa_webhook_deliveries_total{outcome=\"delivered\"}"
        ) == 4.0
    );
    assert_eq!(
        common::metric_value(
            &metrics,
            &format!("rpa_webhook_oldest_undelivered_seconds{{webhook=\"{id}\"}}")
        ),
        0.0
    );
}

#[tokio::test]
async fn a_delivery_owed_at_a_kill_9_is_made_after_the_restart() {
    let receiver = Receiver::start(SECRET, None).await;
    receiver.answer(|_, _| 500);
    let dir = tempfile::tempdir().unwrap();
    // On PostgreSQL the dead instance's hold on the webhook lasts its lease.
    let args = ["--instance-lease", "2s"];
    let mut server = Server::start_in(dir.path(), &args);
    robot(&server).await;
    let webhook = create_webhook(
        &server,
        json!({"url": receiver.url("/"), "types": ["job.created"], "secret": SECRET}),
    )
    .await;
    let id = webhook["id"].as_i64().unwrap();
    create_job(&server).await;
    // The first attempt failed and was recorded as owed.
    eventually(Duration::from_secs(5), || async {
        let listed = deliveries(&server, id).await;
        (!listed.is_empty()).then_some(())
    })
    .await;
    let owed = receiver.seen()[0].id.clone();
    server.kill9();
    receiver.answer(|_, _| 200);
    let server = Server::start_in(dir.path(), &args);
    let seen = receiver
        .wait_for(Duration::from_secs(10), "the owed delivery", |seen| {
            seen.iter().any(|d| d.status == 200)
        })
        .await;
    let made = seen.iter().find(|d| d.status == 200).unwrap();
    assert_eq!(made.id, owed);
    receiver.assert_all_signed();
    eventually(Duration::from_secs(5), || async {
        let listed = deliveries(&server, id).await;
        (listed[0]["outcome"] == "delivered").then_some(())
    })
    .await;
    drop(server);
    common::drop_postgres_database(dir.path());
}

#[tokio::test]
async fn a_webhook_failing_too_long_is_disabled_with_an_event_and_can_be_enabled_again() {
    let failing = Receiver::start(SECRET, None).await;
    failing.answer(|_, _| 500);
    let watcher = Receiver::start(SECRET, None).await;
    let server = Server::start(&["--webhook-retry-for", "2s"]);
    robot(&server).await;
    let webhook = create_webhook(
        &server,
        json!({"url": failing.url("/"), "types": ["job.*"], "secret": SECRET}),
    )
    .await;
    let id = webhook["id"].as_i64().unwrap();
    create_webhook(
        &server,
        json!({"url": watcher.url("/"), "types": ["webhook.*"], "secret": SECRET}),
    )
    .await;
    let job = create_job(&server).await;
    // Attempts at 0, ~1 s and ~3 s: after the third, the first was more than 2 s ago.
    let seen = watcher
        .wait_for(Duration::from_secs(10), "webhook.disabled", |seen| {
            !seen.is_empty()
        })
        .await;
    let event = &seen[0].body;
    assert_eq!(event["type"], "webhook.disabled");
    assert_eq!(event["subject"], format!("webhooks/{id}"));
    assert_eq!(event["data"]["webhook"]["id"], id);
    assert_eq!(event["data"]["webhook"]["active"], false);
    assert!(
        event["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("first attempted")
    );
    assert!(!event.to_string().contains("whsec_"), "{event}");
    let (status, shown) = server.get(&format!("/api/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["active"], false);
    assert!(shown["disabled_at"].is_string());
    let attempts = failing.seen().len();
    assert!((3..=4).contains(&attempts), "{attempts} attempts");

    // Missed while disabled: nothing is sent.
    cancel(&server, job).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(failing.seen().len(), attempts);

    // Enabled: the missed events are listed as skipped, the new ones delivered.
    failing.answer(|_, _| 204);
    let (status, enabled) = server
        .post(&format!("/api/webhooks/{id}/enable"), &json!({}))
        .await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["active"], true);
    assert_eq!(enabled["disabled_at"], Value::Null);
    let skipped: Vec<Value> = deliveries(&server, id)
        .await
        .into_iter()
        .filter(|d| d["outcome"] == "skipped")
        .collect();
    assert_eq!(
        skipped.len(),
        2,
        "the owed creation and the missed cancellation"
    );
    assert!(skipped.iter().all(|d| d["attempt"] == 0));
    let (status, again) = server
        .post(&format!("/api/webhooks/{id}/enable"), &json!({}))
        .await;
    assert_eq!((status, again["active"].clone()), (200, json!(true)));
    let next = create_job(&server).await;
    let seen = failing
        .wait_for(
            Duration::from_secs(5),
            "a delivery after enabling",
            |seen| seen.iter().any(|d| d.status == 204),
        )
        .await;
    let delivered: Vec<&Delivery> = seen.iter().filter(|d| d.status == 204).collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].subject(), format!("jobs/{next}"));
    failing.assert_all_signed();
    watcher.assert_all_signed();
    // Neither the secret nor the bodies of the failed deliveries went to the log.
    let log = server.log();
    assert!(log.contains(&format!("webhook {id}")), "{log}");
    assert!(
        !log.contains(&SECRET[6..]) && !log.contains("specversion"),
        "{log}"
    );
}

#[tokio::test]
async fn the_chat_format_posts_one_line_of_text_with_the_same_signature() {
    let receiver = Receiver::start(SECRET, None).await;
    let server = Server::start(&[]);
    robot(&server).await;
    let webhook = create_webhook(
        &server,
        json!({
            "url": receiver.url("/hooks/T0001/B0001/XXXX"),
            "types": ["job.cancelled", "robot.unreachable"],
            "description": "operations chat",
            "format": "chat",
            "secret": SECRET,
        }),
    )
    .await;
    assert_eq!(webhook["format"], "chat");
    let job = create_job(&server).await;
    cancel(&server, job).await;
    let seen = receiver
        .wait_for(Duration::from_secs(5), "the chat message", |seen| {
            !seen.is_empty()
        })
        .await;
    assert_eq!(
        seen.len(),
        1,
        "only the cancellation is of the webhook's types"
    );
    let text = seen[0].body["text"].as_str().unwrap();
    assert_eq!(
        seen[0].body.as_object().unwrap().len(),
        1,
        "{}",
        seen[0].body
    );
    assert!(
        text.starts_with(&format!(
            "job.cancelled: job {job} (webhook-pkg) on R ({ROBOT})"
        )),
        "{text}"
    );
    assert!(!text.contains('\n'));
    receiver.assert_all_signed();
}

/// A certificate for `localhost` and a TLS server configuration holding it.
fn certificate() -> (String, Arc<rustls::ServerConfig>) {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![issued.cert.der().clone()], key)
    .unwrap();
    (issued.cert.pem(), Arc::new(config))
}

#[tokio::test]
async fn an_https_receiver_is_trusted_through_the_ca_file() {
    let (pem, tls) = certificate();
    let receiver = Receiver::start(SECRET, Some(tls)).await;
    let url = format!("https://localhost:{}/secure", receiver.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, pem).unwrap();

    // Without the CA file the receiver's certificate is not trusted.
    let server = Server::start(&[]);
    robot(&server).await;
    let webhook = create_webhook(
        &server,
        json!({"url": url, "types": ["job.created"], "secret": SECRET}),
    )
    .await;
    create_job(&server).await;
    let id = webhook["id"].as_i64().unwrap();
    let refused = eventually(Duration::from_secs(5), || async {
        deliveries(&server, id).await.into_iter().next()
    })
    .await;
    assert_eq!(refused["outcome"], "failed");
    assert_eq!(refused["error"], "tls");
    assert_eq!(refused["http_status"], Value::Null);
    drop(server);

    let server = Server::start(&["--webhook-ca-file", ca_file.to_str().unwrap()]);
    robot(&server).await;
    create_webhook(
        &server,
        json!({"url": url, "types": ["job.created"], "secret": SECRET}),
    )
    .await;
    let job = create_job(&server).await;
    let seen = receiver
        .wait_for(Duration::from_secs(5), "the HTTPS delivery", |seen| {
            !seen.is_empty()
        })
        .await;
    assert_eq!(seen[0].body["data"]["job"]["id"], job);
    receiver.assert_all_signed();
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_read_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.pem");
    let outcome = rpa_testkit::ServerCommand::new(env!("CARGO_BIN_EXE_socket-server"), dir.path())
        .args(["--webhook-ca-file", missing.to_str().unwrap()])
        .start_timeout(Duration::from_secs(10))
        .start();
    let Err(error) = outcome else {
        panic!("started with a missing CA file");
    };
    assert!(error.to_string().contains("--webhook-ca-file"), "{error}");
}

#[tokio::test]
async fn webhooks_are_validated_and_their_secrets_never_shown_again() {
    let server = Server::start(&["--webhook-deny", "10.0.0.0/8"]);
    let invalid = |body: Value| {
        let server = &server;
        async move {
            let (status, problem) = server.post("/api/webhooks", &body).await;
            assert_eq!(status, 422, "{body}: {problem}");
            assert_eq!(problem["code"], "validation_failed");
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let good = json!({"url": "http://127.0.0.1:9/x", "types": ["job.failed"]});
    for (change, field) in [
        (json!({"url": "ftp://example.com/"}), "url"),
        (json!({"url": "/relative"}), "url"),
        (json!({"url": "https://user:pw@example.com/"}), "url"),
        (
            json!({"url": "http://169.254.169.254/latest/meta-data"}),
            "url",
        ),
        (json!({"url": "http://[::ffff:169.254.169.254]/"}), "url"),
        (json!({"url": "http://100.100.100.200/"}), "url"),
        (json!({"url": "http://10.1.2.3/"}), "url"),
        (
            json!({"url": format!("https://example.com/{}", "a".repeat(2048))}),
            "url",
        ),
        (json!({"url": null}), "url"),
        (json!({"types": []}), "types"),
        (json!({"types": "job.failed"}), "types"),
        (json!({"types": vec!["job.failed"; 51]}), "types"),
        (json!({"types": ["job.failed", "Job Failed"]}), "types[1]"),
        (json!({"description": "d".repeat(501)}), "description"),
        (json!({"format": "xml"}), "format"),
        (json!({"secret": "not-a-secret"}), "secret"),
        (json!({"secret": "whsec_AAAA"}), "secret"),
    ] {
        let mut body = good.clone();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        assert_eq!(invalid(body).await, [field]);
    }
    assert_eq!(invalid(json!([1])).await, [""]);
    assert_eq!(invalid(json!({})).await, ["url", "types"]);

    // Created: the secret shows once, in this answer only.
    let webhook = create_webhook(
        &server,
        json!({"url": "http://127.0.0.1:9/x", "types": ["job.failed", "robot.*"], "description": "d"}),
    )
    .await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        STANDARD.decode(&secret["whsec_".len()..]).unwrap().len(),
        32
    );
    let id = webhook["id"].as_i64().unwrap();
    let (status, headers, _) = http_raw(
        server.addr,
        "POST",
        "/api/webhooks",
        Some(&json!({"url": "http://127.0.0.1:9/y", "types": ["*"]}).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    let location = headers["location"].to_str().unwrap();
    assert!(location.starts_with("/api/webhooks/"), "{location}");
    let (status, one) = server.get(&format!("/api/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert!(one.get("secret").is_none(), "{one}");
    assert_eq!(one["types"], json!(["job.failed", "robot.*"]));
    let (status, list) = server.get("/api/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&secret), "{list}");
    assert!(
        !server.log().contains(&secret[6..]),
        "the log holds a secret"
    );
    let (status, page) = server.get("/api/webhooks?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (status, rest) = server
        .get(&format!("/api/webhooks?after={}", page["next_after"]))
        .await;
    assert_eq!((status, rest["items"][0]["id"].clone()), (200, json!(id)));

    // At most 100.
    for n in 2..100 {
        create_webhook(
            &server,
            json!({"url": format!("http://127.0.0.1:9/{n}"), "types": ["job.failed"]}),
        )
        .await;
    }
    assert_eq!(invalid(good.clone()).await, [""]);
    let (status, _) = http(
        server.addr,
        "DELETE",
        &format!("/api/webhooks/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = server.get(&format!("/api/webhooks/{id}")).await;
    assert_eq!(status, 404);
    create_webhook(&server, good).await;
}

/// This machine's address on its main network interface, if it has one (no packet is sent).
fn outward_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn without_an_api_token_only_loopback_clients_manage_webhooks() {
    let Some(ip) = outward_address() else {
        eprintln!("this machine has no address but loopback: the rule cannot be checked");
        return;
    };
    let body = json!({"url": "http://127.0.0.1:9/x", "types": ["job.failed"]}).to_string();
    let open = Server::start(&["--listen", "0.0.0.0:0"]);
    let outside = SocketAddr::new(ip, open.addr.port());
    for (method, path, body) in [
        ("POST", "/api/webhooks", Some(body.as_str())),
        ("GET", "/api/webhooks", None),
        ("GET", "/api/webhooks/1", None),
        ("DELETE", "/api/webhooks/1", None),
        ("POST", "/api/webhooks/1/enable", None),
        ("GET", "/api/webhooks/1/deliveries", None),
    ] {
        let (status, problem) = http(outside, method, path, body, &[]).await;
        assert_eq!(status, 403, "{method} {path}: {problem}");
        assert_eq!(problem["code"], "forbidden");
    }
    // The rest of the API is as open as ever from there, and webhooks from loopback.
    let (status, _) = http(outside, "GET", "/api/jobs", None, &[]).await;
    assert_eq!(status, 200);
    let (status, _) = http(open.addr, "POST", "/api/webhooks", Some(&body), &[]).await;
    assert_eq!(status, 201);
    drop(open);

    let guarded = Server::start(&["--listen", "0.0.0.0:0", "--api-token", "s3cret-token"]);
    let outside = SocketAddr::new(ip, guarded.addr.port());
    let (status, _) = http(outside, "POST", "/api/webhooks", Some(&body), &[]).await;
    assert_eq!(status, 401);
    let token = [("authorization", "Bearer s3cret-token")];
    let (status, created) = http(outside, "POST", "/api/webhooks", Some(&body), &token).await;
    assert_eq!(status, 201, "{created}");
}

#[tokio::test]
async fn two_instances_deliver_every_event_once() {
    let shared = tempfile::tempdir().unwrap();
    let Some(url) = common::postgres_database(shared.path()) else {
        eprintln!("RPA_TEST_POSTGRES is not set: several instances need PostgreSQL; not run");
        return;
    };
    let receiver = Receiver::start(SECRET, None).await;
    let args = ["--database", url.as_str(), "--instance-lease", "3s"];
    let a = Server::start(&args);
    let b = Server::start(&args);
    robot(&a).await;
    create_webhook(
        &a,
        json!({"url": receiver.url("/"), "types": ["job.*"], "secret": SECRET}),
    )
    .await;
    // Events committed by both instances: 20 jobs created and cancelled through each.
    let mut jobs = Vec::new();
    for _ in 0..20 {
        for server in [&a, &b] {
            let job = create_job(server).await;
            cancel(server, job).await;
            jobs.push(job);
        }
    }
    let expected = jobs.len() * 2;
    let seen = receiver
        .wait_for(Duration::from_secs(20), "every event", |seen| {
            seen.len() >= expected
        })
        .await;
    // Nothing more follows: each event once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen_again = receiver.seen();
    assert_eq!(seen_again.len(), seen.len());
    let mut ids: Vec<i64> = seen_again.iter().map(|d| d.id.parse().unwrap()).collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "an event delivered twice");
    assert_eq!(count, expected);
    for job in &jobs {
        let kinds: Vec<String> = seen_again
            .iter()
            .filter(|d| d.subject() == format!("jobs/{job}"))
            .map(Delivery::kind)
            .collect();
        assert_eq!(kinds, ["job.created", "job.cancelled"], "job {job}");
    }
    receiver.assert_all_signed();
    drop(a);
    drop(b);
    common::drop_postgres_database(shared.path());
}

/// Deliveries per second to one fast receiver on loopback: `n` events are committed while the
/// receiver holds its first requests, then it lets them all through, and the time to the last
/// delivery is measured. Not a test: run it with
/// `RPA_BENCH_SERVER_BIN=$PWD/target/release/socket-server RPA_BENCH_EVENTS=20000 cargo test
/// --release -p socket-server --test webhooks -- --ignored --nocapture deliveries_per_second`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark"]
async fn deliveries_per_second() {
    let events: usize = std::env::var("RPA_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let bin = std::env::var("RPA_BENCH_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_socket-server").to_owned());
    let dir = tempfile::tempdir().unwrap();
    let process = rpa_testkit::ServerCommand::new(&bin, dir.path())
        .start_timeout(Duration::from_secs(30))
        .start()
        .unwrap();
    let addr = process.addr();
    let receiver = Receiver::start(SECRET, None).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(process.ws_url("/"))
        .await
        .unwrap();
    common::send(&mut ws, &common::metadata("_event", "R", ROBOT)).await;
    eventually(Duration::from_secs(10), || async {
        let (status, _) = http(addr, "GET", &format!("/api/robots/{ROBOT}"), None, &[]).await;
        (status == 200).then_some(())
    })
    .await;
    let (status, _) = http(
        addr,
        "POST",
        "/api/webhooks",
        Some(&json!({"url": receiver.url("/"), "types": ["*"], "secret": SECRET}).to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    receiver.gate.send_replace(false);
    let clients = 16;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            tokio::spawn(async move {
                let mut client = rpa_testkit::HttpClient::new(addr);
                for n in (c..events).step_by(clients) {
                    let trigger = Trigger::new("bench-pkg", "studio/bench.std")
                        .robot("R", ROBOT)
                        .at(chrono::Utc::now()
                            + chrono::TimeDelta::days(365)
                            + chrono::TimeDelta::milliseconds(n as i64))
                        .to_json();
                    let answer = client.post("/api/jobs", &trigger).await.unwrap();
                    assert_eq!(answer.status, 201);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let committed = started.elapsed();
    let held = receiver.seen().len();
    let released = Instant::now();
    receiver.gate.send_replace(true);
    let seen = receiver
        .wait_for(Duration::from_secs(300), "every delivery", |seen| {
            seen.len() >= events
        })
        .await;
    let last = seen.iter().map(|d| d.at).max().unwrap();
    let took = last.duration_since(released).as_secs_f64();
    let rate = (events - held) as f64 / took;
    println!(
        "{events} events committed in {:.2} s ({:.0}/s); {held} delivered before the receiver \
         let requests through; the other {} delivered in {took:.2} s: {rate:.0} deliveries/s",
        committed.as_secs_f64(),
        events as f64 / committed.as_secs_f64(),
        events - held
    );
    receiver.assert_all_signed();
    drop(process);
}
