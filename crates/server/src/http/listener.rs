//! The accept loop: HTTP/1.1 on hyper, the robot upgrade handled here (so its WebSocket gets
//! small buffers), every other request handed to the warp REST filters.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower_service::Service;
use warp::filters::BoxedFilter;

use crate::app::App;

/// How long open HTTP requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Closes the connection a request came on, whatever it is doing: for an event stream whose
/// consumer stopped reading (hyper polls a response body only when the socket takes more, so
/// the stream cannot end it by itself). Every request carries one in its extensions.
#[derive(Clone, Debug)]
pub(crate) struct CloseConnection(Arc<Notify>);

impl CloseConnection {
    pub(crate) fn close(&self) {
        self.0.notify_one();
    }
}

pub(crate) async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    rest: BoxedFilter<(warp::reply::Response,)>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = &app.config.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper refuses a buffer under 8 KiB; the head limit is what it can hold.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(100);
    let rest = warp::service(rest);
    let open = Arc::new(crate::app::Tracker::default());
    let per_ip = Arc::new(PerIp::new(limits.connections_per_ip));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = per_ip.take(peer.ip()) else {
                        // Dropping the socket is the cheapest answer to a flood.
                        log::warn!("peer={peer}: refused, its address holds {} connections already", per_ip.limit);
                        continue;
                    };
                    // Packages are small frames: send them now, not after Nagle's delay.
                    let _ = stream.set_nodelay(true);
                    let app = Arc::clone(&app);
                    let rest = rest.clone();
                    let slot = Arc::new(slot);
                    let closer = CloseConnection(Arc::new(Notify::new()));
                    let close = closer.clone();
                    let service = service_fn(move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(close.clone());
                        handle(Arc::clone(&app), rest.clone(), request, peer, Arc::clone(&slot))
                    });
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    let tracked = open.track();
                    let mut stop = stop.clone();
                    tokio::spawn(async move {
                        let mut connection = std::pin::pin!(connection);
                        let ended = tokio::select! {
                            ended = connection.as_mut() => ended,
                            _ = stop.changed() => {
                                // Finish the request under way, then close.
                                connection.as_mut().graceful_shutdown();
                                connection.await
                            }
                            () = closer.0.notified() => {
                                log::debug!("peer={peer}: HTTP connection closed: its consumer stopped reading");
                                Ok(())
                            }
                        };
                        if let Err(error) = ended {
                            log::debug!("peer={peer}: HTTP connection ended: {error}");
                        }
                        drop(tracked);
                    });
                }
                Err(error) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    log::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, open.idle()).await.is_err() {
        log::warn!(
            "some HTTP requests did not finish within {} s",
            DRAIN.as_secs()
        );
    }
}

/// The client's address, for the routes that depend on where a request comes from (read with
/// `warp::ext::optional`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub(crate) SocketAddr);

async fn handle<S>(
    app: Arc<App>,
    mut rest: S,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    slot: Arc<Slot>,
) -> Result<warp::reply::Response, Infallible>
where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>,
{
    let access = &app.config.access;
    if crate::http::ws::is_robot_upgrade(&request) {
        if let Some(refused) = access.check_robot(request.uri(), request.headers()) {
            log::warn!(
                "peer={peer}: robot upgrade refused: {}",
                refused.status().as_u16()
            );
            return Ok(refused);
        }
        // The robot's connection keeps its address's slot for as long as it lives.
        return Ok(crate::http::ws::upgrade(app, request, peer, slot));
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let origin = request.headers().get(hyper::header::ORIGIN).cloned();
    let mut response = match access.check_api(&method, request.uri(), request.headers()) {
        Some(refused) => {
            log::warn!(
                "peer={peer}: {method} {} refused: {}",
                crate::logging::Untrusted(&path),
                refused.status().as_u16()
            );
            refused
        }
        None if method == hyper::Method::OPTIONS => crate::http::auth::preflight(),
        None => {
            request.extensions_mut().insert(Peer(peer));
            rest.call(request).await?
        }
    };
    if let Some(origin) = origin {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(hyper::header::ORIGIN, origin);
        access.cors(&method, &headers, &mut response);
    }
    log::debug!(
        "peer={peer}: {method} {} -> {}",
        crate::logging::Untrusted(&path),
        response.status().as_u16()
    );
    Ok(response)
}

/// Open connections per source address.
pub(crate) struct PerIp {
    limit: usize,
    counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection's place in its address's count, given back when dropped.
pub(crate) struct Slot {
    owner: Arc<PerIp>,
    ip: std::net::IpAddr,
}

impl PerIp {
    fn new(limit: usize) -> PerIp {
        PerIp {
            limit,
            counts: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Slot> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if self.limit > 0 && *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            owner: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .owner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}
