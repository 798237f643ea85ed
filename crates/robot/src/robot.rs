use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rpa_protocol::{
    JobReport, ReportStatus, RobotFrame, RobotMessage, ServerMessage, parse_server_frame,
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use crate::history::{DELIVERY_HISTORY, History};
use crate::{Event, RobotConfig, RobotError};

/// How long [`Robot::connect`] waits for the TCP connection and the WebSocket upgrade.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an extended robot waits for `registered` after sending its metadata.
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Robot::close`] waits for the server to answer the close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Frames shown in [`RobotError::Protocol`] are cut to this many characters.
const MAX_QUOTED_FRAME_CHARS: usize = 200;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An event read from the socket and not yet returned.
struct Received {
    event: Event,
    frame: Option<String>,
    acked: bool,
}

/// One robot connection. See the crate documentation for an example.
pub struct Robot {
    socket: Socket,
    config: RobotConfig,
    connection_id: Option<String>,
    pings: u64,
    history: History,
    /// Events read from the socket and not yet returned: packages that arrived while an
    /// extended robot waited for `registered`, and the event [`Robot::next_event`] is
    /// acknowledging or was interrupted returning.
    received: VecDeque<Received>,
    /// The server's close frame, a dropped connection or a socket error was seen: nothing more
    /// will be read.
    closed: bool,
    last_frame: Option<String>,
}

impl std::fmt::Debug for Robot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Robot")
            .field("config", &self.config)
            .field("connection_id", &self.connection_id)
            .field("pings", &self.pings)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Robot {
    /// Connects and sends the metadata.
    ///
    /// An extended robot then waits (up to [`REGISTRATION_TIMEOUT`]) for the server's
    /// `registered` message, whose connection id [`Robot::connection_id`] returns; a declined
    /// metadata, an `error` or a close before it is an error. Packages arriving before it are
    /// kept for [`Robot::next_event`]. A field robot returns right after sending.
    pub async fn connect(config: RobotConfig) -> Result<Robot, RobotError> {
        let socket = open(&config).await?;
        let mut robot = Robot {
            socket,
            config,
            connection_id: None,
            pings: 0,
            history: History::new(DELIVERY_HISTORY),
            received: VecDeque::new(),
            closed: false,
            last_frame: None,
        };
        robot.register().await?;
        Ok(robot)
    }

    /// Opens a new connection with the same configuration and registers again, as a field
    /// robot does after a drop. The duplicate history, the ping count and packages not yet
    /// returned are kept (other unreturned events are dropped); the old socket is dropped
    /// without a closing handshake.
    pub async fn reconnect(&mut self) -> Result<(), RobotError> {
        self.socket = open(&self.config).await?;
        self.closed = false;
        self.connection_id = None;
        // What the old connection said about itself is stale; its packages are not.
        self.received
            .retain(|received| matches!(received.event, Event::Package { .. }));
        self.register().await
    }

    async fn register(&mut self) -> Result<(), RobotError> {
        self.resend_metadata().await?;
        if !self.config.extended {
            return Ok(());
        }
        let deadline = Instant::now() + REGISTRATION_TIMEOUT;
        loop {
            tokio::time::timeout_at(deadline, self.receive())
                .await
                .map_err(|_| RobotError::Timeout)??;
            // receive() queued exactly one event. Packages stay queued for next_event; anything
            // else answers the metadata.
            let Some(received) = self.received.pop_back() else {
                continue;
            };
            match received.event {
                Event::Registered { .. } => return Ok(()),
                Event::Package { .. } => self.received.push_back(received),
                Event::MetadataDeclined => return Err(RobotError::MetadataDeclined),
                Event::ServerError { code, message } => {
                    return Err(RobotError::Refused { code, message });
                }
                Event::Closed { code, reason } => {
                    return Err(RobotError::ClosedBeforeRegistration { code, reason });
                }
            }
        }
    }

    /// The connection id of the last `registered` message (extended robots only).
    pub fn connection_id(&self) -> Option<&str> {
        self.connection_id.as_deref()
    }

    pub fn config(&self) -> &RobotConfig {
        &self.config
    }

    /// WebSocket pings received so far (each was answered with a pong).
    pub fn pings(&self) -> u64 {
        self.pings
    }

    /// Whether the connection is known to be over (closed by the server, dropped or failed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The text of the last frame behind a returned event (close frames aside), or of the last
    /// frame refused as [`RobotError::Protocol`]: for tests that check bytes on the wire.
    pub fn last_frame(&self) -> Option<&str> {
        self.last_frame.as_deref()
    }

    /// Whether the package of `job_id` arrived more than once on this robot (among the last
    /// [`DELIVERY_HISTORY`] jobs): the server resends a package whose acknowledgement it did
    /// not get. A package the robot [declined](Robot::decline) is expected back, so its next
    /// arrival does not count.
    pub fn is_duplicate(&self, job_id: i64) -> bool {
        self.history.is_duplicate(job_id)
    }

    /// The next event. Pings are answered and counted, not returned. With
    /// [`RobotConfig::auto_ack`] an extended robot acknowledges each package before returning
    /// it, duplicates included (see [`Robot::is_duplicate`]).
    ///
    /// After [`Event::Closed`] or a socket error, further calls return
    /// [`RobotError::Closed`]. A frame the robot cannot read is a [`RobotError::Protocol`] and
    /// the connection stays usable.
    ///
    /// Cancel safe: when the returned future is dropped, no event is lost (an
    /// acknowledgement may then be sent twice).
    pub async fn next_event(&mut self) -> Result<Event, RobotError> {
        loop {
            if let Some(front) = self.received.front() {
                if let Event::Package { job_id, .. } = front.event
                    && !front.acked
                    && self.config.acknowledges()
                {
                    self.ack(job_id).await?;
                    if let Some(front) = self.received.front_mut() {
                        front.acked = true;
                    }
                }
                if let Some(received) = self.received.pop_front() {
                    if received.frame.is_some() {
                        self.last_frame = received.frame;
                    }
                    return Ok(received.event);
                }
            }
            self.receive().await?;
        }
    }

    /// [`Robot::next_event`], or `None` when nothing arrives within `timeout`.
    pub async fn next_event_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Event>, RobotError> {
        match tokio::time::timeout(timeout, self.next_event()).await {
            Ok(event) => event.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Reads frames until one makes an event, and queues it. Cancel safe: an event is queued
    /// before anything else is awaited.
    async fn receive(&mut self) -> Result<(), RobotError> {
        if self.closed {
            return Err(RobotError::Closed);
        }
        loop {
            let message = match self.socket.next().await {
                Some(Ok(message)) => message,
                None => {
                    self.closed_by(None, String::new());
                    return Ok(());
                }
                // The connection went away without a closing handshake: the end of the
                // connection like a close frame, not a failure of the robot.
                Some(Err(
                    error @ (tungstenite::Error::Io(_)
                    | tungstenite::Error::Protocol(
                        ProtocolError::ResetWithoutClosingHandshake,
                    )),
                )) => {
                    self.closed_by(None, error.to_string());
                    return Ok(());
                }
                Some(Err(error)) => {
                    self.closed = true;
                    return Err(RobotError::socket(error));
                }
            };
            match message {
                Message::Text(text) => {
                    let text = text.as_str().to_owned();
                    return match self.interpret(&text) {
                        Ok(event) => {
                            self.received.push_back(Received {
                                event,
                                frame: Some(text),
                                acked: false,
                            });
                            Ok(())
                        }
                        Err(error) => {
                            self.last_frame = Some(text);
                            Err(error)
                        }
                    };
                }
                Message::Binary(bytes) => {
                    return Err(RobotError::Protocol(format!(
                        "binary frame of {} bytes",
                        bytes.len()
                    )));
                }
                // tungstenite queued the pong; the next read or write sends it.
                Message::Ping(_) => self.pings += 1,
                Message::Pong(_) | Message::Frame(_) => {}
                Message::Close(frame) => {
                    let (code, reason) = match frame {
                        Some(frame) => (Some(u16::from(frame.code)), frame.reason.to_string()),
                        None => (None, String::new()),
                    };
                    self.closed_by(code, reason);
                    // Sends the close reply tungstenite queued; the server may already be gone.
                    let _ = self.socket.flush().await;
                    return Ok(());
                }
            }
        }
    }

    fn closed_by(&mut self, code: Option<u16>, reason: String) {
        self.closed = true;
        self.received.push_back(Received {
            event: Event::Closed { code, reason },
            frame: None,
            acked: false,
        });
    }

    fn interpret(&mut self, text: &str) -> Result<Event, RobotError> {
        let (_, message) = parse_server_frame(text).map_err(|error| {
            let quoted: String = text.chars().take(MAX_QUOTED_FRAME_CHARS).collect();
            RobotError::Protocol(format!("{error} (frame: {quoted})"))
        })?;
        Ok(match message {
            ServerMessage::Notification { package, job_id } => {
                let name = package
                    .get("package_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.history.record(job_id, name);
                Event::Package { job_id, package }
            }
            ServerMessage::DeclineMetaData => Event::MetadataDeclined,
            ServerMessage::Registered {
                connection_id,
                ping_interval_ms,
                ack_timeout_ms,
                ..
            } => {
                self.connection_id = Some(connection_id.clone());
                Event::Registered {
                    connection_id,
                    ping_interval_ms,
                    ack_timeout_ms,
                }
            }
            ServerMessage::Error { code, message } => Event::ServerError { code, message },
        })
    }

    /// `Ack pkg reception` for `job_id` (extended protocol).
    pub async fn ack(&mut self, job_id: i64) -> Result<(), RobotError> {
        self.send(RobotMessage::Ack { job_id }).await
    }

    /// A job report: a `client robot message` holding
    /// `{"job_id": N, "status": "success" | "failure", "message"?: ...}`.
    pub async fn report(
        &mut self,
        job_id: i64,
        success: bool,
        message: Option<&str>,
    ) -> Result<(), RobotError> {
        let report = JobReport {
            job_id,
            status: if success {
                ReportStatus::Success
            } else {
                ReportStatus::Failure
            },
            message: message.map(str::to_owned),
        };
        self.send_message(report.to_value()).await
    }

    /// `Decline pkg reception`: the robot could not take the package of that name (`""`: any);
    /// the server resends it, and that resend is not counted as a duplicate.
    pub async fn decline(&mut self, package_name: &str) -> Result<(), RobotError> {
        self.send(RobotMessage::DeclinePackage(package_name.to_owned()))
            .await?;
        self.history.declined(package_name);
        Ok(())
    }

    /// A `client robot message` with any value (the server stores it as a robot message).
    pub async fn send_message(&mut self, value: Value) -> Result<(), RobotError> {
        self.send(RobotMessage::Message(value)).await
    }

    /// Sends `client robot metaData` again, as the C# robot does after a decline. An extended
    /// robot then gets a new [`Event::Registered`] from [`Robot::next_event`].
    pub async fn resend_metadata(&mut self) -> Result<(), RobotError> {
        self.send(RobotMessage::MetaData(self.config.metadata_value()))
            .await
    }

    /// Sends `text` as one text frame, as it is: for tests of bad input.
    pub async fn send_text(&mut self, text: &str) -> Result<(), RobotError> {
        if self.closed {
            return Err(RobotError::Closed);
        }
        self.socket
            .send(Message::text(text))
            .await
            .map_err(RobotError::socket)
    }

    async fn send(&mut self, message: RobotMessage) -> Result<(), RobotError> {
        let text = RobotFrame::new(self.config.dialect, message).encode();
        self.send_text(&text).await
    }

    /// Closes with code 1000 and waits up to [`CLOSE_TIMEOUT`] for the server's close frame
    /// ([`RobotError::Timeout`] when it does not come). A connection already closed is `Ok`.
    pub async fn close(mut self) -> Result<(), RobotError> {
        if self.closed {
            return Ok(());
        }
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        match self.socket.close(Some(frame)).await {
            Ok(()) => {}
            Err(error) => {
                return match RobotError::socket(error) {
                    RobotError::Closed => Ok(()),
                    other => Err(other),
                };
            }
        }
        let answered = async {
            while let Some(message) = self.socket.next().await {
                if matches!(message, Ok(Message::Close(_)) | Err(_)) {
                    break;
                }
            }
        };
        tokio::time::timeout(CLOSE_TIMEOUT, answered)
            .await
            .map_err(|_| RobotError::Timeout)
    }
}

async fn open(config: &RobotConfig) -> Result<Socket, RobotError> {
    let connect_error = |error| RobotError::Connect(Box::new(error));
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(connect_error)?;
    if let Some(token) = &config.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            RobotError::Config("the token is not a valid HTTP header value".to_owned())
        })?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    // Small buffers: a load generator holds thousands of robots, and a robot's traffic is a
    // few small frames (tungstenite's defaults are 128 KiB each way).
    let socket_config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let connecting = connect_async_with_config(request, Some(socket_config), true);
    let (socket, _response) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| RobotError::Timeout)?
        .map_err(connect_error)?;
    Ok(socket)
}
