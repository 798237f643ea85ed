//! A keep-alive HTTP/1.1 client: one connection, one request at a time (one per concurrent
//! client of a scenario), reconnecting after an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// How long one request (connection included) may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct HttpClient {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    last_used: Instant,
    /// Connections opened so far (1 on a healthy run).
    pub connections: u64,
}

/// A connection idle for longer is replaced before the next request: the server closes idle
/// keep-alive connections (its header timeout, 10 s by default), and a request sent just as
/// it does would fail.
const MAX_IDLE: Duration = Duration::from_secs(4);

impl HttpClient {
    pub fn new(addr: SocketAddr) -> HttpClient {
        HttpClient {
            addr,
            host: addr.to_string(),
            sender: None,
            last_used: Instant::now(),
            connections: 0,
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self.last_used.elapsed() > MAX_IDLE {
            self.sender = None;
        }
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.connections += 1;
            self.sender = Some(sender);
        }
        match self.sender.as_mut() {
            Some(sender) => Ok(sender),
            None => Err(Error::msg("no HTTP connection")),
        }
    }

    /// One request; the connection is dropped (and opened again next time) after an error.
    /// A GET that fails is tried once more on a new connection.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer> {
        let attempts = if method == Method::GET { 2 } else { 1 };
        let mut result = Err(Error::msg("no attempt"));
        for _ in 0..attempts {
            result = tokio::time::timeout(
                REQUEST_TIMEOUT,
                self.request_inner(method.clone(), path, body.clone()),
            )
            .await
            .unwrap_or_else(|_| Err(Error::msg(format!("no answer within {REQUEST_TIMEOUT:?}"))));
            self.last_used = Instant::now();
            if result.is_ok() {
                break;
            }
            self.sender = None;
        }
        result
    }

    async fn request_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer> {
        let host = self.host.clone();
        let sender = self.sender().await?;
        sender.ready().await?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| Error::msg(format!("bad request: {e}")))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post_json(&mut self, path: &str, body: Bytes) -> Result<Answer> {
        self.request(Method::POST, path, Some(body)).await
    }
}

/// `http://127.0.0.1:4000`, `127.0.0.1:4000/`, `localhost:4000` -> the socket address.
pub fn parse_base_url(url: &str) -> Result<SocketAddr> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .or_else(|| url.trim().strip_prefix("ws://"))
        .unwrap_or(url.trim());
    let authority = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs;
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(SocketAddr::is_ipv4))
        .ok_or_else(|| Error::msg(format!("--url {url}: expected http://HOST:PORT")))
}

/// Answers counted by status (0: no answer: connection error or timeout).
pub type StatusCounts = BTreeMap<u16, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let expected: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(parse_base_url("http://127.0.0.1:4000").unwrap(), expected);
        assert_eq!(parse_base_url("http://127.0.0.1:4000/").unwrap(), expected);
        assert_eq!(parse_base_url("127.0.0.1:4000").unwrap(), expected);
        assert_eq!(parse_base_url("ws://127.0.0.1:4000/ws").unwrap(), expected);
        assert_eq!(
            parse_base_url("http://localhost:4000").unwrap().port(),
            4000
        );
        assert!(parse_base_url("http://127.0.0.1").is_err());
    }
}
