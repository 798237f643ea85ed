//! The robot WebSocket: the upgrade (done on hyper directly, with small buffers) and one task
//! per connection.

mod closing;
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
use crate::http::auth::{RobotRefusal, RobotToken};
use crate::http::problem::Problem;

/// The robot credential a connection presented on its upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    pub(crate) id: i64,
    /// The address it is bound to (normalised, as stored).
    pub(crate) address: String,
}

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

/// Decides, before the upgrade, whether a robot's request may connect (docs/SECURITY.md): its
/// origin, its token, and `--robot-auth`. A credential is looked up by the hash of its token,
/// on every upgrade, so a revoked one is refused at once. `Ok` holds the credential presented,
/// if any; `Err` the answer to give instead (401, 403, or 503 when the database cannot say).
pub(crate) async fn authenticate(
    app: &App,
    request: &Request<Incoming>,
) -> Result<Option<Credential>, Response> {
    let access = &app.config.access;
    let token = access
        .check_robot(request.uri(), request.headers())
        .map_err(RobotRefusal::response)?;
    let credential = match &token {
        RobotToken::Credential { hash } => {
            let hash = hash.clone();
            let found = app
                .db
                .read(move |conn| conn.credential_by_hash(&hash))
                .await
                .map_err(|error| Problem::from(error).into_response())?;
            match found {
                Some(record) => Some(Credential {
                    id: record.id,
                    address: record.robot_address,
                }),
                // Unknown, or revoked: the same answer.
                None => return Err(RobotRefusal::InvalidToken.response()),
            }
        }
        RobotToken::None | RobotToken::Shared => None,
    };
    access.admit_robot(&token).map_err(RobotRefusal::response)?;
    Ok(credential)
}

/// Closes, with 1008, this instance's connections that presented robot credential `id`: it
/// was revoked (here, or by another instance sharing the database).
pub(crate) fn close_revoked(registry: &rpa_registry::Registry, id: i64) {
    let closed = registry.close_credential(id, connection::CLOSE_POLICY, "credential revoked");
    if closed > 0 {
        log::info!("robot credential {id} revoked: closing its {closed} connection(s)");
    }
}

/// The request's path and query for a log line (to be quoted as [`Untrusted`]), the value of
/// any `token` parameter cut out: robots that cannot set a header bring their credential in the
/// query.
pub(crate) fn logged_target(uri: &hyper::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if crate::http::percent::decode(name, true) == "token" => {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Answers the upgrade request and, on success, starts the connection's task.
pub(crate) fn upgrade(
    app: Arc<App>,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    slot: Arc<crate::http::limits::Slot>,
    credential: Option<Credential>,
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
    let target = logged_target(request.uri());
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    closing::Watched::new(TokioIo::new(upgraded)),
                    Role::Server,
                    Some(config),
                )
                .await;
                connection::run(app, ws, peer, &target, credential).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_cut_from_logged_targets() {
        let target = |uri: &str| logged_target(&uri.parse().unwrap());
        assert_eq!(
            target("/api/robots/connect?token=rbt_secret"),
            "/api/robots/connect?token=***"
        );
        assert_eq!(target("/?a=1&%74oken=s&b=2"), "/?a=1&%74oken=***&b=2");
        assert_eq!(target("/ws"), "/ws");
        assert!(!target("/?x=1&token=rbt_abc&token=rbt_def").contains("rbt_"));
    }
}
