//! A tiny in-process fake server: accepts WebSocket connections on 127.0.0.1:0 and lets a
//! test read what the robot sent and send it anything.

// `result_large_err`: the handshake callback signature is tungstenite's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err,
    dead_code,
    unreachable_pub
)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rpa_protocol::{Dialect, RobotFrame, ServerMessage, parse_robot_frame};
use serde_json::{Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{WebSocketStream, accept_hdr_async};

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub struct FakeServer {
    listener: TcpListener,
    port: u16,
}

/// One accepted connection, with what its upgrade request said.
pub struct Peer {
    pub ws: WebSocketStream<TcpStream>,
    pub path: String,
    pub authorization: Option<String>,
}

impl FakeServer {
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        FakeServer { listener, port }
    }

    /// On a given port of 127.0.0.1 (one a test reserved and let go of).
    pub async fn start_on(port: u16) -> FakeServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        FakeServer { listener, port }
    }

    /// `ws://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Accepts one TCP connection and refuses its upgrade with `status`.
    pub async fn refuse(&self, status: StatusCode) {
        let (stream, _) = tokio::time::timeout(PATIENCE, self.listener.accept())
            .await
            .unwrap()
            .unwrap();
        let result = accept_hdr_async(stream, |_: &Request, _: Response| {
            let mut refusal = ErrorResponse::new(Some("refused".to_owned()));
            *refusal.status_mut() = status;
            Err(refusal)
        })
        .await;
        assert!(result.is_err());
    }

    pub async fn accept(&self) -> Peer {
        let (stream, _) = tokio::time::timeout(PATIENCE, self.listener.accept())
            .await
            .expect("no connection")
            .unwrap();
        let mut path = String::new();
        let mut authorization = None;
        let ws = accept_hdr_async(stream, |request: &Request, response: Response| {
            path = request.uri().path().to_owned();
            authorization = request
                .headers()
                .get("authorization")
                .map(|value| value.to_str().unwrap().to_owned());
            Ok(response)
        })
        .await
        .unwrap();
        Peer {
            ws,
            path,
            authorization,
        }
    }
}

impl Peer {
    /// The next frame other than a pong.
    pub async fn recv(&mut self) -> Message {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the robot sent nothing")
                .expect("the connection ended")
                .unwrap();
            if !matches!(message, Message::Pong(_)) {
                return message;
            }
        }
    }

    /// The next frame, pongs included.
    pub async fn recv_raw(&mut self) -> Message {
        tokio::time::timeout(PATIENCE, self.ws.next())
            .await
            .expect("the robot sent nothing")
            .expect("the connection ended")
            .unwrap()
    }

    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    pub async fn recv_frame(&mut self) -> RobotFrame {
        parse_robot_frame(&self.recv_text().await).unwrap()
    }

    /// Nothing but pongs arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Pong(_)))) => {}
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    pub async fn send(&mut self, message: &ServerMessage, dialect: Dialect) {
        self.send_text(&message.encode(dialect)).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    pub async fn close(&mut self, code: u16, reason: &str) {
        self.ws
            .close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            }))
            .await
            .unwrap();
    }

    pub async fn register(&mut self, connection_id: &str, dialect: Dialect) {
        self.send(&registered(connection_id), dialect).await;
    }
}

pub fn registered(connection_id: &str) -> ServerMessage {
    ServerMessage::Registered {
        connection_id: connection_id.to_owned(),
        protocol: 2,
        ping_interval_ms: 10_000,
        ack_timeout_ms: 30_000,
    }
}

pub fn package(name: &str) -> Map<String, Value> {
    let Value::Object(package) = serde_json::json!({
        "package_name": name,
        "path": format!("cloudinary/studioPackages/{name}.std"),
    }) else {
        unreachable!()
    };
    package
}

pub fn notification(job_id: i64, name: &str) -> ServerMessage {
    ServerMessage::Notification {
        package: package(name),
        job_id,
    }
}
