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
use tokio::sync::watch;
use tower_service::Service;
use warp::filters::BoxedFilter;

use crate::app::App;

/// How long open HTTP requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

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
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Packages are small frames: send them now, not after Nagle's delay.
                    let _ = stream.set_nodelay(true);
                    let app = Arc::clone(&app);
                    let rest = rest.clone();
                    let service = service_fn(move |request| {
                        handle(Arc::clone(&app), rest.clone(), request, peer)
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

async fn handle<S>(
    app: Arc<App>,
    mut rest: S,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Result<warp::reply::Response, Infallible>
where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>,
{
    if crate::ws::is_robot_upgrade(&request) {
        return Ok(crate::ws::upgrade(app, request, peer));
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = rest.call(request).await?;
    log::debug!(
        "peer={peer}: {method} {} -> {}",
        crate::logging::Untrusted(&path),
        response.status().as_u16()
    );
    Ok(response)
}
