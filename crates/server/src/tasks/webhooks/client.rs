//! The HTTP client of webhook deliveries: one POST, within a deadline, to an address that was
//! checked, over TLS when the URL says https. Hand-built on hyper's connection API rather than a
//! general client because the rules are unusual: resolve the name ourselves and connect to the
//! very address that passed the check (no second lookup a changed DNS record could redirect), no
//! proxy from the environment, no redirects, and at most 64 KiB of a reply read.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT,
};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::addresses::AddressPolicy;

/// Why a delivery did not get an answer: the coarse classes `/deliveries` shows (never the
/// receiver's own text, which could be anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Timeout,
    Refused,
    Dns,
    Tls,
    AddressNotAllowed,
    /// The connection broke, or the answer was not HTTP.
    Connection,
}

impl Failure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Refused => "refused",
            Failure::Dns => "dns",
            Failure::Tls => "tls",
            Failure::AddressNotAllowed => "address_not_allowed",
            Failure::Connection => "connection",
        }
    }
}

/// Why a webhook URL was refused at creation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlError {
    #[error("is not an absolute http or https URL")]
    NotHttp,
    #[error("must not hold user information")]
    UserInfo,
    #[error("has no host")]
    NoHost,
    #[error("names an address that webhooks may not reach")]
    AddressNotAllowed,
}

/// A receiver's URL, taken apart once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    tls: bool,
    /// As written in the URL, without brackets for IPv6: the name to resolve and to verify the
    /// certificate against.
    host: String,
    port: u16,
    /// The `Host` header: host and port as written.
    authority: String,
    path_and_query: String,
}

impl Target {
    /// The host as written, for logs (the rest of a URL may hold a token).
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Reads an `http` or `https` URL without user information. A literal address the policy
    /// refuses is refused here too (names are checked at each delivery).
    pub(crate) fn parse(url: &str, policy: &AddressPolicy) -> Result<Target, UrlError> {
        let uri: Uri = url.parse().map_err(|_| UrlError::NotHttp)?;
        let tls = match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
            _ => return Err(UrlError::NotHttp),
        };
        let authority = uri.authority().ok_or(UrlError::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(UrlError::UserInfo);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && !policy.allows(ip)
        {
            return Err(UrlError::AddressNotAllowed);
        }
        Ok(Target {
            tls,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

/// A connection kept open for the next delivery to the same place.
struct Idle {
    addr: SocketAddr,
    tls: bool,
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

/// Deliveries' client. Cheap to share; keeps a few idle connections per destination.
pub(crate) struct DeliveryClient {
    tls: TlsConnector,
    policy: AddressPolicy,
    timeout: Duration,
    max_reply: usize,
    idle: Mutex<Vec<Idle>>,
}

/// Idle connections kept at most, over all destinations.
const MAX_IDLE: usize = 64;

impl DeliveryClient {
    /// `extra_roots`: certificates trusted besides the public web PKI (an internal CA).
    pub(crate) fn new(
        policy: AddressPolicy,
        extra_roots: Vec<CertificateDer<'static>>,
        timeout: Duration,
        max_reply: usize,
    ) -> Result<DeliveryClient, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in extra_roots {
            roots.add(cert)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(DeliveryClient {
            tls: TlsConnector::from(Arc::new(config)),
            policy,
            timeout,
            max_reply,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// POSTs `body` with `headers` (and Content-Type: application/json) and returns the answer's
    /// status, or why there was none, within the client's timeout.
    pub(crate) async fn post(
        &self,
        target: &Target,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<u16, Failure> {
        tokio::time::timeout(self.timeout, self.exchange(target, headers, body))
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    async fn exchange(
        &self,
        target: &Target,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<u16, Failure> {
        let addrs = self.resolve(target).await?;
        if let Some((addr, sender)) = self.take_idle(target, &addrs) {
            match self.send(target, headers, body.clone(), addr, sender).await {
                Ok(status) => return Ok(status),
                // A kept connection the receiver closed meanwhile: once more on a new one (a
                // receiver may see the request twice, as at-least-once allows).
                Err(Failure::Connection) => {}
                Err(failure) => return Err(failure),
            }
        }
        let (addr, sender) = self.connect(target, &addrs).await?;
        self.send(target, headers, body, addr, sender).await
    }

    async fn send(
        &self,
        target: &Target,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        addr: SocketAddr,
        mut sender: SendRequest<Full<Bytes>>,
    ) -> Result<u16, Failure> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(target.path_and_query.as_str())
            .header(HOST, target.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, body.len())
            .header(
                USER_AGENT,
                concat!("rpa-socket-server/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|_| Failure::Connection)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Failure::Connection)?;
        let status = response.status().as_u16();
        let reusable = !response
            .headers()
            .get(CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
        // Read at most `max_reply` bytes of the answer, only so that the connection can be used
        // again; what it says is never kept.
        let mut body = response.into_body();
        let mut read = 0_usize;
        let mut complete = true;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                complete = false;
                break;
            };
            if let Some(data) = frame.data_ref() {
                read += data.len();
                if read > self.max_reply {
                    complete = false;
                    break;
                }
            }
        }
        if complete && reusable {
            self.put_idle(Idle {
                addr,
                tls: target.tls,
                host: target.host.clone(),
                sender,
            });
        }
        Ok(status)
    }

    async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, Failure> {
        let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, target.port)],
            Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|_| Failure::Dns)?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Failure::Dns);
        }
        // A name that resolves to any refused address is refused as a whole: mixed answers are
        // how DNS rebinding reaches what a check let through.
        if addrs.iter().any(|addr| !self.policy.allows(addr.ip())) {
            return Err(Failure::AddressNotAllowed);
        }
        Ok(addrs)
    }

    fn take_idle(
        &self,
        target: &Target,
        addrs: &[SocketAddr],
    ) -> Option<(SocketAddr, SendRequest<Full<Bytes>>)> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(index) = idle.iter().position(|conn| {
            conn.tls == target.tls && conn.host == target.host && addrs.contains(&conn.addr)
        }) {
            let conn = idle.swap_remove(index);
            if conn.sender.is_ready() {
                return Some((conn.addr, conn.sender));
            }
        }
        None
    }

    fn put_idle(&self, conn: Idle) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|conn| !conn.sender.is_closed());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(
        &self,
        target: &Target,
        addrs: &[SocketAddr],
    ) -> Result<(SocketAddr, SendRequest<Full<Bytes>>), Failure> {
        let mut failure = Failure::Refused;
        for &addr in addrs {
            let stream = match TcpStream::connect(addr).await {
                Ok(stream) => stream,
                Err(error) => {
                    failure = if error.kind() == std::io::ErrorKind::ConnectionRefused {
                        Failure::Refused
                    } else {
                        Failure::Connection
                    };
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let sender = if target.tls {
                let name = ServerName::try_from(target.host.clone()).map_err(|_| Failure::Tls)?;
                let stream = self
                    .tls
                    .connect(name, stream)
                    .await
                    .map_err(|_| Failure::Tls)?;
                handshake(stream).await?
            } else {
                handshake(stream).await?
            };
            return Ok((addr, sender));
        }
        Err(failure)
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Connection)?;
    // The connection runs until the sender is dropped (or the peer closes it).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
