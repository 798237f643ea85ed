//! The accept loop: HTTP/1.1 on hyper, the robot upgrade handled here (so its WebSocket gets
//! small buffers), every other request handed to the warp REST filters.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower_service::Service;
use warp::Reply as _;
use warp::filters::BoxedFilter;

use crate::app::App;
use crate::http::limits::{BodyBudget, Connections, LimitedBody, Refusal, Slot};
use crate::http::methods;
use crate::http::problem::Problem;
use crate::logging::{Untrusted, warnings};

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
    let connections = Arc::new(Connections::new(
        limits.max_connections,
        limits.connections_per_ip,
    ));
    let bodies = Arc::new(BodyBudget::new(limits.max_inflight_body));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let slot = match connections.take(peer.ip()) {
                        Ok(slot) => slot,
                        Err(refusal) => {
                            // Accepted and closed at once: the backlog never fills, and the
                            // descriptor goes back before the next accept.
                            drop(stream);
                            refused(peer, refusal, &connections);
                            continue;
                        }
                    };
                    // Packages are small frames: send them now, not after Nagle's delay.
                    let _ = stream.set_nodelay(true);
                    let app = Arc::clone(&app);
                    let rest = rest.clone();
                    let bodies = Arc::clone(&bodies);
                    let slot = Arc::new(slot);
                    let closer = CloseConnection(Arc::new(Notify::new()));
                    let close = closer.clone();
                    let service = service_fn(move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(close.clone());
                        handle(
                            Arc::clone(&app),
                            rest.clone(),
                            request,
                            peer,
                            Arc::clone(&slot),
                            Arc::clone(&bodies),
                        )
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
                    // Out of file descriptors, most likely: wait instead of spinning, and say
                    // so once a second, not thousands of times.
                    if let Some(left_out) = warnings::ACCEPT_ERRORS.admit() {
                        log::warn!("cannot accept a connection: {error}{left_out}");
                    }
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

fn refused(peer: SocketAddr, refusal: Refusal, connections: &Connections) {
    let Some(left_out) = warnings::REFUSED_CONNECTIONS.admit() else {
        return;
    };
    match refusal {
        Refusal::Address => log::warn!(
            "peer={peer}: refused, its address holds {} connections already (--max-connections-per-ip){left_out}",
            connections.per_ip()
        ),
        Refusal::Total => log::warn!(
            "peer={peer}: refused, the server holds {} connections already (--max-connections){left_out}",
            connections.max_total()
        ),
    }
}

/// The REST routes as a service (`warp::service`), taking bodies bounded by [`LimitedBody`].
trait RestService:
    Service<Request<LimitedBody>, Response = warp::reply::Response, Error = Infallible>
{
}

impl<S> RestService for S where
    S: Service<Request<LimitedBody>, Response = warp::reply::Response, Error = Infallible>
{
}

async fn handle(
    app: Arc<App>,
    mut rest: impl RestService,
    request: Request<Incoming>,
    peer: SocketAddr,
    slot: Arc<Slot>,
    bodies: Arc<BodyBudget>,
) -> Result<warp::reply::Response, Infallible> {
    let access = &app.config.access;
    if crate::http::ws::is_robot_upgrade(&request) {
        let credential = match crate::http::ws::authenticate(&app, &request).await {
            Ok(credential) => credential,
            Err(refused) => {
                if let Some(left_out) = warnings::REFUSED_HANDSHAKES.admit() {
                    log::warn!(
                        "peer={peer}: robot upgrade on {} refused: {}{left_out}",
                        Untrusted(&crate::http::ws::logged_target(request.uri())),
                        refused.status().as_u16()
                    );
                }
                return Ok(refused);
            }
        };
        // The robot's connection keeps its address's slot for as long as it lives.
        return Ok(crate::http::ws::upgrade(
            app, request, peer, slot, credential,
        ));
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = match access.check_api(&method, request.uri(), request.headers()) {
        Some(refused) => {
            if let Some(left_out) = warnings::REFUSED_REQUESTS.admit() {
                log::warn!(
                    "peer={peer}: {method} {} refused: {}{left_out}",
                    Untrusted(&path),
                    refused.status().as_u16()
                );
            }
            refused
        }
        None if method == Method::OPTIONS => crate::http::auth::preflight(),
        None if method == Method::HEAD && methods::is_compat_change(&path) => {
            method_not_allowed(&path)
        }
        None => call_rest(&app, &mut rest, request, peer, &bodies).await,
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::ALLOW)
    {
        response = method_not_allowed(&path);
    }
    if let Some(origin) = origin {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(header::ORIGIN, origin);
        access.cors(&method, &headers, &mut response);
    }
    log::debug!(
        "peer={peer}: {method} {} -> {}",
        Untrusted(&path),
        response.status().as_u16()
    );
    Ok(response)
}

/// Hands the request to the REST routes, its body bounded in time and paid for from the
/// budget of bodies in flight; `HEAD` is answered as `GET` (hyper sends no body for it).
async fn call_rest(
    app: &App,
    rest: &mut impl RestService,
    request: Request<Incoming>,
    peer: SocketAddr,
    bodies: &Arc<BodyBudget>,
) -> warp::reply::Response {
    let limits = &app.config.limits;
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(Peer(peer));
    if parts.method == Method::HEAD {
        parts.method = Method::GET;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let charged =
        LimitedBody::charge_declared(body, declared, limits.max_body, bodies, limits.body_timeout);
    let Ok((body, verdict)) = charged else {
        return busy_with_bodies(peer, limits.max_inflight_body);
    };
    let request = Request::from_parts(parts, body);
    let Ok(response) = rest.call(request).await;
    if verdict.timed_out() {
        if let Some(left_out) = warnings::REFUSED_CONNECTIONS.admit() {
            log::warn!(
                "peer={peer}: the request body did not arrive within {} s: 408, closing{left_out}",
                limits.body_timeout.as_secs_f64()
            );
        }
        let mut response = Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "Request timeout",
            format!(
                "the request body did not arrive within {} s",
                limits.body_timeout.as_secs_f64()
            ),
        )
        .into_response();
        close_after(&mut response);
        return response;
    }
    if verdict.over_budget() {
        return busy_with_bodies(peer, limits.max_inflight_body);
    }
    response
}

/// 503: the bodies in flight fill `--max-inflight-body`. The connection is closed, so the body
/// that was not read is not read.
fn busy_with_bodies(peer: SocketAddr, max: usize) -> warp::reply::Response {
    if let Some(left_out) = warnings::REFUSED_CONNECTIONS.admit() {
        log::warn!(
            "peer={peer}: request bodies in flight hold {} (--max-inflight-body): 503{left_out}",
            crate::config::format_size(max)
        );
    }
    let mut response = Problem::unavailable(
        "too_many_bodies",
        "the server is receiving as many request bodies as it holds at once; retry shortly",
    )
    .into_response();
    close_after(&mut response);
    response
}

fn close_after(response: &mut warp::reply::Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// 405 with the `Allow` header the path's routes make.
fn method_not_allowed(path: &str) -> warp::reply::Response {
    let allowed = methods::allowed(path);
    let mut response = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        "this route does not take that method",
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&methods::allow_header(&allowed)) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
