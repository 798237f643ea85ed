//! The robot WebSocket: the upgrade (done on hyper directly, with small buffers) and one task
//! per connection.

mod connection;
mod frames;

pub(crate) use connection::CLOSE_GOING_AWAY;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::Reply as _;
use warp::reply::Response;

use crate::app::App;
use crate::http::problem::Problem;

/// The paths robots connect on: `/` and `/ws`, and the path the deployed robots use behind
/// their gateway.
const ROBOT_PATHS: [&str; 3] = ["/", "/ws", "/api/robots/connect"];

/// Whether this request asks for the robot WebSocket. Anything else goes to the REST routes.
pub(crate) fn is_robot_upgrade(request: &Request<Incoming>) -> bool {
    ROBOT_PATHS.contains(&request.uri().path())
        && header_has(request.headers(), header::UPGRADE, "websocket")
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Answers the upgrade request and, on success, starts the connection's task.
pub(crate) fn upgrade(
    app: Arc<App>,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    slot: Arc<crate::http::limits::Slot>,
) -> Response {
    if request.method() != Method::GET {
        let mut response = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            "a WebSocket upgrade must use GET",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let headers = request.headers();
    if !header_has(headers, header::CONNECTION, "upgrade") {
        return Problem::bad_request("bad_upgrade", "the Connection header must include Upgrade")
            .into_response();
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut response = Problem::new(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported_websocket_version",
            "Unsupported WebSocket version",
            "only WebSocket version 13 is supported",
        )
        .into_response();
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Problem::bad_request("bad_upgrade", "the Sec-WebSocket-Key header is missing")
            .into_response();
    };
    let accept = derive_accept_key(key.as_bytes());

    let config = websocket_config(&app.config.limits);
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                connection::run(app, ws, peer).await;
                drop(slot);
            }
            Err(error) => {
                if let Some(left_out) = crate::logging::warnings::REFUSED_HANDSHAKES.admit() {
                    log::info!("peer={peer}: WebSocket upgrade failed: {error}{left_out}");
                }
            }
        }
    });

    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// Small buffers: tungstenite's defaults (128 KiB each way) would cost ~137 KiB per idle robot.
/// Writes go out at once (write buffer 0) and a robot that does not read is bounded by
/// `write_buffer`.
fn websocket_config(limits: &crate::config::Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(limits.read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.write_buffer)
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(limits.max_frame))
}
