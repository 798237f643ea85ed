//! A small HTTP/1.1 client: one keep-alive connection, one request at a time, reconnecting
//! after an error (a killed server leaves every connection broken).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// How long one request, connection included, may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A response: what the checks need of it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// An RFC 9457 problem document: the content type says so and the body has a status and
    /// a title.
    pub fn is_problem(&self) -> bool {
        let body = self.json();
        self.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/problem+json"))
            && body.get("status").and_then(Value::as_u64) == Some(u64::from(self.status))
            && body.get("title").and_then(Value::as_str).is_some()
    }
}

pub struct HttpClient {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> HttpClient {
        HttpClient {
            addr,
            sender: None,
            timeout: REQUEST_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }

    pub fn set_addr(&mut self, addr: SocketAddr) {
        if addr != self.addr {
            self.addr = addr;
            self.sender = None;
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| Error::msg("no HTTP connection"))
    }

    /// One request; after an error the connection is dropped and opened again next time.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let result = tokio::time::timeout(self.timeout, self.send(method, path, body))
            .await
            .unwrap_or_else(|_| Err(Error::msg(format!("no answer within {:?}", self.timeout))));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Result<Answer> {
        let host = self.addr.to_string();
        let sender = self.sender().await?;
        sender.ready().await?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(body.unwrap_or_default()))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let header = |name: hyper::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(hyper::header::CONTENT_TYPE);
        let retry_after = header(hyper::header::RETRY_AFTER);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            content_type,
            retry_after,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: &Value) -> Result<Answer> {
        self.request(Method::POST, path, Some(body)).await
    }
}
