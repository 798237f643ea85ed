//! A fast webhook receiver for the benchmarks: on loopback, answers every POST `204` at once,
//! counts the deliveries and remembers the highest event id (`webhook-id`) it got. It checks
//! nothing: what it costs is the server's side of a delivery, not a receiver's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use anyhow::{Context as _, Result, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rpa_testkit::HttpClient;
use serde_json::json;
use tokio::net::TcpListener;

/// What the receiver has seen so far.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) deliveries: AtomicU64,
    pub(crate) last_event: AtomicI64,
}

/// A receiver running on its own tasks until the process ends.
pub(crate) struct Sink {
    pub(crate) addr: SocketAddr,
    pub(crate) received: Arc<Received>,
}

impl Sink {
    pub(crate) async fn start() -> Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Received::default());
        let counts = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let counts = Arc::clone(&counts);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: Request<hyper::body::Incoming>| {
                            let counts = Arc::clone(&counts);
                            async move {
                                let id = request
                                    .headers()
                                    .get("webhook-id")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse::<i64>().ok());
                                // Read the body whole, as a receiver does.
                                let _ = request.into_body().collect().await;
                                counts.deliveries.fetch_add(1, Ordering::Relaxed);
                                if let Some(id) = id {
                                    counts.last_event.fetch_max(id, Ordering::Relaxed);
                                }
                                let mut response = Response::new(Empty::<Bytes>::new());
                                *response.status_mut() = StatusCode::NO_CONTENT;
                                Ok::<_, Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Sink { addr, received })
    }

    /// Subscribes the receiver to every event of the server at `http`.
    pub(crate) async fn subscribe(&self, http: &mut HttpClient) -> Result<()> {
        let body = json!({
            "url": format!("http://{}/events", self.addr),
            "types": ["*"],
            "description": "rpa-loadgen receiver",
        });
        let answer = http
            .post("/api/webhooks", &body)
            .await
            .context("POST /api/webhooks")?;
        if answer.status != 201 {
            bail!(
                "POST /api/webhooks answered {}: {}",
                answer.status,
                answer.text()
            );
        }
        Ok(())
    }

    pub(crate) fn deliveries(&self) -> u64 {
        self.received.deliveries.load(Ordering::Relaxed)
    }

    pub(crate) fn last_event(&self) -> i64 {
        self.received.last_event.load(Ordering::Relaxed)
    }
}
