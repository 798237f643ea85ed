//! A small HTTP/1.1 client: one keep-alive connection, one request at a time, opened again
//! after an error (a killed server leaves every connection broken).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderName};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::error::{Error, Result};

pub use hyper::Method;
pub use hyper::header::HeaderMap;

/// How long one request, connection included, may take unless [`HttpClient::timeout`] says
/// otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON; `Null` when it is not JSON.
    pub fn json(&self) -> Value {
        self.try_json().unwrap_or(Value::Null)
    }

    pub fn try_json(&self) -> serde_json::Result<Value> {
        serde_json::from_slice(&self.body)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// An RFC 9457 problem document: the content type says so and the body has a status and
    /// a title.
    pub fn is_problem(&self) -> bool {
        let body = self.json();
        self.header(header::CONTENT_TYPE)
            .is_some_and(|t| t.starts_with("application/problem+json"))
            && body.get("status").and_then(Value::as_u64) == Some(u64::from(self.status))
            && body.get("title").and_then(Value::as_str).is_some()
    }
}

/// One keep-alive connection to `addr`.
pub struct HttpClient {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
    max_idle: Option<Duration>,
    retry_get: bool,
    last_used: Instant,
    connections: u64,
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> HttpClient {
        HttpClient {
            addr,
            sender: None,
            timeout: REQUEST_TIMEOUT,
            max_idle: None,
            retry_get: false,
            last_used: Instant::now(),
            connections: 0,
        }
    }

    /// How long one request, connection included, may take.
    pub fn timeout(mut self, limit: Duration) -> HttpClient {
        self.timeout = limit;
        self
    }

    /// Replaces a connection idle for longer before the next request. The server closes idle
    /// keep-alive connections (its header timeout), and a request sent just as it does fails.
    pub fn max_idle(mut self, idle: Duration) -> HttpClient {
        self.max_idle = Some(idle);
        self
    }

    /// A GET that fails is tried once more on a new connection.
    pub fn retry_get(mut self) -> HttpClient {
        self.retry_get = true;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_addr(&mut self, addr: SocketAddr) {
        if addr != self.addr {
            self.addr = addr;
            self.sender = None;
        }
    }

    /// Connections opened so far (1 on a healthy run).
    pub fn connections(&self) -> u64 {
        self.connections
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer> {
        self.request(Method::GET, path, None, &[]).await
    }

    pub async fn post(&mut self, path: &str, body: &Value) -> Result<Answer> {
        self.post_bytes(path, Bytes::from(body.to_string())).await
    }

    /// A POST of a JSON document already encoded.
    pub async fn post_bytes(&mut self, path: &str, body: Bytes) -> Result<Answer> {
        self.request(Method::POST, path, Some(body), &[]).await
    }

    pub async fn delete(&mut self, path: &str) -> Result<Answer> {
        self.request(Method::DELETE, path, None, &[]).await
    }

    /// One request; a body is sent as `application/json` unless `headers` name a content
    /// type. After an error the connection is dropped and opened again next time.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Answer> {
        let attempts = if self.retry_get && method == Method::GET {
            2
        } else {
            1
        };
        let parts = Parts {
            method,
            path,
            body,
            headers,
        };
        let mut result = Err(Error::Timeout(self.timeout));
        for _ in 0..attempts {
            result = tokio::time::timeout(self.timeout, self.send(&parts))
                .await
                .unwrap_or(Err(Error::Timeout(self.timeout)));
            self.last_used = Instant::now();
            if result.is_ok() {
                break;
            }
            self.sender = None;
        }
        result
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self
            .max_idle
            .is_some_and(|idle| self.last_used.elapsed() > idle)
        {
            self.sender = None;
        }
        let sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                self.connections += 1;
                sender
            }
        };
        Ok(self.sender.insert(sender))
    }

    async fn send(&mut self, parts: &Parts<'_>) -> Result<Answer> {
        let request = parts.build(&self.addr.to_string())?;
        let sender = self.sender().await?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// What a request is made of, kept to send it again.
struct Parts<'a> {
    method: Method,
    path: &'a str,
    body: Option<Bytes>,
    headers: &'a [(&'a str, &'a str)],
}

impl Parts<'_> {
    fn build(&self, host: &str) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.path)
            .header(header::HOST, host);
        let typed = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(header::CONTENT_TYPE.as_str()));
        if self.body.is_some() && !typed {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in self.headers {
            builder = builder.header(*name, *value);
        }
        Ok(builder.body(Full::new(self.body.clone().unwrap_or_default()))?)
    }
}
