//! The delivery client against receivers on loopback: plain HTTP and HTTPS with a certificate of
//! the test's own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::addresses::AddressPolicy;
use super::client::{DeliveryClient, Failure, Target};

/// A request as the receiver got it: path and query, headers, body.
type Seen = (String, Vec<(String, String)>, Bytes);

/// A receiver on loopback answering `status` after `delay`; counts connections and requests.
struct Receiver {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
}

async fn receiver(
    status: u16,
    delay: Duration,
    reply_bytes: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, s) = (Arc::clone(&connections), Arc::clone(&seen));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            let s = Arc::clone(&s);
            let tls = tls.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let s = Arc::clone(&s);
                        async move {
                            let path = request.uri().to_string();
                            let headers = request
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            s.lock().unwrap().push((path, headers, body));
                            tokio::time::sleep(delay).await;
                            let mut response =
                                Response::new(Full::new(Bytes::from(vec![b'x'; reply_bytes])));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                match tls {
                    Some(config) => {
                        let Ok(stream) =
                            tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                        else {
                            return;
                        };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    Receiver {
        addr,
        connections,
        seen,
    }
}

fn client(
    policy: AddressPolicy,
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> DeliveryClient {
    DeliveryClient::new(policy, roots, Duration::from_millis(500), 64 * 1024).unwrap()
}

#[tokio::test]
async fn posts_the_body_with_its_headers_and_reuses_the_connection() {
    let r = receiver(204, Duration::ZERO, 0, None).await;
    let c = client(AddressPolicy::default(), vec![]);
    let target = Target::parse(&format!("http://{}/hook?x=1", r.addr), c.policy()).unwrap();
    let headers = [(
        HeaderName::from_static("webhook-id"),
        HeaderValue::from_static("7"),
    )];
    for _ in 0..3 {
        assert_eq!(
            c.post(&target, &headers, Bytes::from_static(b"{}")).await,
            Ok(204)
        );
    }
    assert_eq!(r.connections.load(Ordering::SeqCst), 1);
    let seen = r.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].0, "/hook?x=1");
    assert!(
        seen[0]
            .1
            .contains(&("webhook-id".to_owned(), "7".to_owned()))
    );
    assert!(
        seen[0]
            .1
            .contains(&("content-type".to_owned(), "application/json".to_owned()))
    );
    assert_eq!(&seen[0].2[..], b"{}");
}

#[tokio::test]
async fn a_large_reply_is_not_read_whole_and_the_status_counts() {
    let r = receiver(500, Duration::ZERO, 1024 * 1024, None).await;
    let c = client(AddressPolicy::default(), vec![]);
    let target = Target::parse(&format!("http://{}/", r.addr), c.policy()).unwrap();
    assert_eq!(c.post(&target, &[], Bytes::new()).await, Ok(500));
    assert_eq!(c.post(&target, &[], Bytes::new()).await, Ok(500));
    assert_eq!(
        r.connections.load(Ordering::SeqCst),
        2,
        "a connection with an unread reply is not reused"
    );
}

#[tokio::test]
async fn failures_are_classed() {
    let c = client(
        AddressPolicy::new(vec!["10.0.0.0/8".parse().unwrap()]),
        vec![],
    );
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let target = Target::parse(&format!("http://{closed}/"), c.policy()).unwrap();
    assert_eq!(
        c.post(&target, &[], Bytes::new()).await,
        Err(Failure::Refused)
    );
    let slow = receiver(200, Duration::from_secs(5), 0, None).await;
    let target = Target::parse(&format!("http://{}/", slow.addr), c.policy()).unwrap();
    assert_eq!(
        c.post(&target, &[], Bytes::new()).await,
        Err(Failure::Timeout)
    );
    // `.invalid` never resolves; without a DNS server the lookup may time out instead.
    let target = Target::parse("http://no-such-host.invalid/", c.policy()).unwrap();
    let outcome = c.post(&target, &[], Bytes::new()).await;
    assert!(
        matches!(outcome, Err(Failure::Dns | Failure::Timeout)),
        "{outcome:?}"
    );
    assert!(Target::parse("http://10.1.2.3/", c.policy()).is_err());
    assert!(Target::parse("http://169.254.169.254/latest", c.policy()).is_err());
    assert!(Target::parse("http://user:pw@example.com/", c.policy()).is_err());
    assert!(Target::parse("ftp://example.com/", c.policy()).is_err());
    assert!(Target::parse("/relative", c.policy()).is_err());
    let tls_to_plain = receiver(200, Duration::ZERO, 0, None).await;
    let target = Target::parse(
        &format!("https://localhost:{}/", tls_to_plain.addr.port()),
        c.policy(),
    )
    .unwrap();
    assert_eq!(c.post(&target, &[], Bytes::new()).await, Err(Failure::Tls));
}

#[tokio::test]
async fn https_receivers_with_a_trusted_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .unwrap();
    let r = receiver(200, Duration::ZERO, 10, Some(Arc::new(config))).await;
    let url = format!("https://localhost:{}/secure", r.addr.port());
    let untrusting = client(AddressPolicy::default(), vec![]);
    let target = Target::parse(&url, untrusting.policy()).unwrap();
    assert_eq!(
        untrusting.post(&target, &[], Bytes::new()).await,
        Err(Failure::Tls)
    );
    let trusting = client(AddressPolicy::default(), vec![der]);
    assert_eq!(
        trusting.post(&target, &[], Bytes::from_static(b"{}")).await,
        Ok(200)
    );
    assert_eq!(r.seen.lock().unwrap().last().unwrap().0, "/secure");
}
