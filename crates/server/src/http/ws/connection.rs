//! One robot connection: a single task that reads the robot's frames, writes what is queued for
//! it, pings it once registered, and notices when it has gone silent.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rpa_protocol::{Dialect, RobotAddress};
use rpa_registry::{CloseRequest, Outbound, Sending, Session};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Credential;
use super::closing::{self, Watched};
use crate::app::App;
use crate::http::metrics::bump;
use crate::logging::warnings;
use crate::tasks::dispatch::Written;

pub(super) type Socket = WebSocketStream<Watched<TokioIo<Upgraded>>>;

/// Close codes the server sends.
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;
pub(super) const CLOSE_PROTOCOL: u16 = 1002;
pub(super) const CLOSE_INVALID_DATA: u16 = 1007;
pub(super) const CLOSE_POLICY: u16 = 1008;
pub(super) const CLOSE_TOO_BIG: u16 = 1009;

/// How long closing a connection may take: the server's Close written, the robot's answer and
/// the end of its stream awaited.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What the connection registered as, once its metadata was accepted.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub(super) address: RobotAddress,
    pub(super) extended: bool,
}

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum End {
    /// The robot closed it (or the TCP connection ended).
    Peer(String),
    /// The server closed it with this code.
    Closed(CloseRequest),
    /// Nothing arrived for three ping intervals.
    Silent,
    /// Reading or writing failed.
    Failed(String),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Peer(detail) => write!(f, "closed by the robot ({detail})"),
            End::Closed(close) => {
                write!(f, "closed by the server ({} {})", close.code, close.reason)
            }
            End::Silent => f.write_str("silent for three ping intervals: considered dead"),
            End::Failed(detail) => write!(f, "connection failed: {detail}"),
        }
    }
}

pub(super) struct Connection {
    pub(super) app: Arc<App>,
    pub(super) session: Arc<Session>,
    pub(super) ws: Socket,
    /// Decided by the first valid frame; `_event` until then.
    pub(super) dialect: Option<Dialect>,
    pub(super) robot: Option<Identity>,
    /// The credential presented on the upgrade, if any: it decides which address the
    /// connection may register as.
    pub(super) credential: Option<Credential>,
    /// Until the robot's metadata is accepted: when the connection is closed without it.
    metadata_due: Option<Instant>,
    last_inbound: Instant,
    next_ping: Option<Instant>,
    bad_frames: VecDeque<Instant>,
    rate: Bucket,
    /// Since when the robot has been kept over its rate without a pause.
    throttled_since: Option<Instant>,
    /// Sendings written to an extended robot and not yet acknowledged: job id -> sending number.
    pub(super) awaiting_ack: HashMap<i64, i32>,
    /// Sendings written to a field robot, with the confirmation ping that followed them. The
    /// robot's pong to that ping proves it read past them (pongs answer pings in stream order);
    /// if the connection ends first, they are sent again.
    unconfirmed: Vec<(Sending, u64)>,
    /// The number of the next confirmation ping.
    next_confirmation: u64,
}

/// A short tag naming the connection in log lines: `conn=<id> robot=<address>`.
pub(super) struct Tag<'a>(&'a Connection);

impl fmt::Display for Tag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn={} robot=", self.0.session.id())?;
        match &self.0.robot {
            // An address is a MAC or text the robot chose: quote it unless it is a MAC.
            Some(robot) if robot.address.is_mac() => write!(f, "{}", robot.address),
            Some(robot) => write!(f, "{}", crate::logging::Untrusted(robot.address.as_str())),
            None => f.write_str("-"),
        }
    }
}

pub(super) async fn run(
    app: Arc<App>,
    ws: Socket,
    peer: SocketAddr,
    target: &str,
    credential: Option<Credential>,
) {
    let session = app
        .registry
        .connect_with(credential.as_ref().map(|credential| credential.id));
    let _tracked = app.connections.track();
    bump(&app.metrics.connections_opened);
    let opened = Instant::now();
    let rate = Bucket::new(app.config.limits.robot_rate, app.config.limits.robot_burst);
    let metadata_due = opened + app.config.limits.metadata_timeout;
    let mut connection = Connection {
        app,
        session,
        ws,
        dialect: None,
        robot: None,
        credential,
        metadata_due: Some(metadata_due),
        last_inbound: opened,
        next_ping: None,
        bad_frames: VecDeque::new(),
        rate,
        throttled_since: None,
        awaiting_ack: HashMap::new(),
        unconfirmed: Vec::new(),
        next_confirmation: 1,
    };
    match &connection.credential {
        Some(credential) => log::info!(
            "{}: connected from {peer} on {} with credential {} of {}",
            connection.tag(),
            crate::logging::Untrusted(target),
            credential.id,
            crate::logging::Untrusted(&credential.address)
        ),
        None => log::info!(
            "{}: connected from {peer} on {}",
            connection.tag(),
            crate::logging::Untrusted(target)
        ),
    }
    let end = connection.serve().await;
    connection.finish(end, opened.elapsed()).await;
}

impl Connection {
    pub(super) fn tag(&self) -> Tag<'_> {
        Tag(self)
    }

    pub(super) fn dialect(&self) -> Dialect {
        self.dialect.unwrap_or_default()
    }

    async fn serve(&mut self) -> End {
        let ping_interval = self.app.config.ping_interval;
        let dead_after = ping_interval * 3;
        loop {
            if let Some(close) = self.session.close_request() {
                return self.close(close).await;
            }
            if let Err(end) = self.flush_queue().await {
                return end;
            }
            let silent_at = self.last_inbound + dead_after;
            let deadline = [self.next_ping, self.metadata_due]
                .into_iter()
                .flatten()
                .fold(silent_at, Instant::min);
            // Over its rate, the robot is not read until it may send again: TCP slows it down
            // and nothing it sent is lost. Kept up for long, it is disconnected.
            let throttled = self.rate.wait();
            if let Some(end) = self.throttle(throttled.is_some()).await {
                return end;
            }
            tokio::select! {
                () = self.session.woken() => {}
                () = tokio::time::sleep(throttled.unwrap_or_default()), if throttled.is_some() => {}
                frame = self.ws.next(), if throttled.is_none() => {
                    self.last_inbound = Instant::now();
                    match frame {
                        None => return End::Peer("end of stream".to_owned()),
                        Some(Ok(message)) => {
                            // Boxed: what handling a frame holds across its awaits would
                            // otherwise be reserved in every idle connection's task.
                            if let Err(end) = Box::pin(self.on_message(message)).await {
                                return end;
                            }
                        }
                        Some(Err(error)) => return self.on_read_error(error).await,
                    }
                }
                () = sleep_until(deadline) => {
                    let now = Instant::now();
                    if self.metadata_due.is_some_and(|due| now >= due) {
                        return self.no_metadata().await;
                    }
                    if now >= silent_at {
                        return End::Silent;
                    }
                    if self.next_ping.is_some_and(|ping| now >= ping) {
                        self.next_ping = Some(now + ping_interval);
                        if let Err(end) = self.send(Message::Ping(Default::default())).await {
                            return end;
                        }
                    }
                }
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Result<(), End> {
        // Every frame counts against the rate, control frames too: a flood of pings costs the
        // server as much as one of messages.
        self.rate.take();
        match message {
            Message::Text(text) => self.on_text(text.as_str()).await,
            Message::Binary(_) => self.bad_frame(rpa_protocol::FrameError::Binary, "").await,
            // tungstenite answers pings itself; pongs only prove the robot is alive.
            Message::Pong(payload) => {
                self.confirmed(&payload);
                Ok(())
            }
            Message::Ping(_) | Message::Frame(_) => Ok(()),
            Message::Close(_) => Err(self.answer_close().await),
        }
    }

    /// The robot sent a Close: it is answered (its code echoed, 1000 for none, 1002 for one
    /// that may not be sent) and the connection ends.
    async fn answer_close(&mut self) -> End {
        let received = self.ws.get_ref().peer_close();
        let code = received.map_or(closing::NORMAL, closing::PeerClose::answer);
        closing::answer(self.ws.get_mut(), code, Instant::now() + CLOSE_WAIT).await;
        End::Peer(match received.and_then(|close| close.code) {
            Some(received) if received == code => format!("code {received}"),
            Some(received) => format!("code {received}, which may not be sent: answered {code}"),
            None => "no code".to_owned(),
        })
    }

    /// No valid metadata arrived within `--metadata-timeout` of the upgrade.
    async fn no_metadata(&mut self) -> End {
        let limit = self.app.config.limits.metadata_timeout;
        if let Some(left_out) = warnings::BAD_FRAMES.admit() {
            log::warn!(
                "{}: no valid metadata within {} s of the upgrade: closing{left_out}",
                self.tag(),
                limit.as_secs_f64()
            );
        }
        self.close(CloseRequest {
            code: CLOSE_POLICY,
            reason: "no valid metadata".to_owned(),
        })
        .await
    }

    /// The robot's metadata was accepted: no more deadline for it.
    pub(super) fn registered(&mut self, identity: Identity) {
        self.robot = Some(identity);
        self.metadata_due = None;
    }

    /// Tracks how long the robot has been over its rate; past [`SUSTAINED_ABUSE`] it is closed
    /// with 1008.
    async fn throttle(&mut self, throttled: bool) -> Option<End> {
        if !throttled {
            // Only a robot that slowed down enough to refill half its burst is forgiven: one
            // that stays at the edge keeps its start time.
            if self.rate.relaxed() {
                self.throttled_since = None;
            }
            return None;
        }
        let since = match self.throttled_since {
            Some(since) => since,
            None => {
                let limits = &self.app.config.limits;
                log::warn!(
                    "{}: more than {} frames a second (burst {}): reading it slower",
                    self.tag(),
                    limits.robot_rate,
                    limits.robot_burst
                );
                *self.throttled_since.insert(Instant::now())
            }
        };
        if since.elapsed() < SUSTAINED_ABUSE {
            return None;
        }
        log::warn!(
            "{}: over its rate for {} s: disconnecting it",
            self.tag(),
            SUSTAINED_ABUSE.as_secs()
        );
        Some(
            self.close(CloseRequest {
                code: CLOSE_POLICY,
                reason: "message rate exceeded".to_owned(),
            })
            .await,
        )
    }

    /// Starts pinging: only registered robots are pinged, as the original did.
    pub(super) fn start_pings(&mut self) {
        if self.next_ping.is_none() {
            self.next_ping = Some(Instant::now() + self.app.config.ping_interval);
        }
    }

    /// Counts a bad frame; too many within the window close the connection with 1008.
    pub(super) fn too_many_bad_frames(&mut self) -> bool {
        let limits = &self.app.config.limits;
        let now = Instant::now();
        while self
            .bad_frames
            .front()
            .is_some_and(|at| now.duration_since(*at) > limits.bad_frame_window)
        {
            self.bad_frames.pop_front();
        }
        self.bad_frames.push_back(now);
        self.bad_frames.len() > limits.bad_frames as usize
    }

    async fn on_read_error(&mut self, error: WsError) -> End {
        match error {
            WsError::Capacity(detail) => {
                if let Some(left_out) = warnings::BAD_FRAMES.admit() {
                    log::warn!(
                        "{}: frame over the size limit: {detail}{left_out}",
                        self.tag()
                    );
                }
                self.close_broken(CloseRequest {
                    code: CLOSE_TOO_BIG,
                    reason: "message too big".to_owned(),
                })
                .await
            }
            WsError::ConnectionClosed | WsError::AlreadyClosed => {
                End::Peer("connection closed".to_owned())
            }
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                End::Peer("connection reset without a close frame".to_owned())
            }
            // RFC 6455: a protocol violation (unmasked frame, reserved opcode or bits, a
            // control frame over 125 bytes) closes with 1002, invalid UTF-8 with 1007.
            WsError::Protocol(detail) => {
                if let Some(left_out) = warnings::BAD_FRAMES.admit() {
                    log::warn!(
                        "{}: WebSocket protocol error: {detail}{left_out}",
                        self.tag()
                    );
                }
                self.close_broken(CloseRequest {
                    code: CLOSE_PROTOCOL,
                    reason: "protocol error".to_owned(),
                })
                .await
            }
            // tungstenite reports a Close whose reason is not UTF-8 as it reports such a text
            // frame; the Close was seen on its way in. It is a malformed Close: 1002, and the
            // robot, having sent its Close, sends no other.
            WsError::Utf8(_) if self.ws.get_ref().peer_close().is_some() => {
                if let Some(left_out) = warnings::BAD_FRAMES.admit() {
                    log::warn!("{}: close reason is not UTF-8{left_out}", self.tag());
                }
                self.close_broken(CloseRequest {
                    code: CLOSE_PROTOCOL,
                    reason: "close reason is not UTF-8".to_owned(),
                })
                .await
            }
            // RFC 6455 §8.1: not a bad frame, the connection fails.
            WsError::Utf8(_) => {
                if let Some(left_out) = warnings::BAD_FRAMES.admit() {
                    log::warn!("{}: text frame is not UTF-8{left_out}", self.tag());
                }
                self.close(CloseRequest {
                    code: CLOSE_INVALID_DATA,
                    reason: "text frame is not UTF-8".to_owned(),
                })
                .await
            }
            other => End::Failed(other.to_string()),
        }
    }

    /// Writes what is queued for the robot, confirming each sending once written.
    async fn flush_queue(&mut self) -> Result<(), End> {
        let confirm_with = self.next_confirmation;
        let mut field_sendings = false;
        while let Some(item) = self.session.pop() {
            let Outbound { text, job } = item;
            if let Err(end) = self.send(Message::text(text)).await {
                if let Some(sending) = job {
                    self.app.dispatcher.give_back(
                        sending,
                        Utc::now(),
                        chrono::TimeDelta::zero(),
                        "the connection failed while the package was being written",
                    );
                }
                return Err(end);
            }
            if let Some(sending) = job {
                let extended = self.robot.as_ref().is_some_and(|r| r.extended);
                if extended {
                    self.awaiting_ack.insert(sending.job_id, sending.attempt);
                } else {
                    self.unconfirmed.push((sending, confirm_with));
                    field_sendings = true;
                }
                self.app.dispatcher.written(Written {
                    sending,
                    awaiting_ack: extended,
                    at: Utc::now(),
                });
            }
        }
        if field_sendings {
            self.next_confirmation += 1;
            let payload = confirm_with.to_be_bytes().to_vec();
            self.send(Message::Ping(payload.into())).await?;
        }
        // Jobs waited for room in this robot's queue, and it is empty now: hand over more.
        if let Some(robot) = &self.robot
            && self.session.take_backlog()
        {
            let address = robot.address.clone();
            self.app
                .dispatcher
                .robot_ready(
                    &self.session,
                    &address,
                    "sent to the robot once its queue had room",
                )
                .await;
        }
        Ok(())
    }

    /// A pong to confirmation ping `number` confirms the field sendings written before it.
    fn confirmed(&mut self, payload: &[u8]) {
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else {
            return;
        };
        let number = u64::from_be_bytes(bytes);
        self.unconfirmed.retain(|(_, ping)| *ping > number);
    }

    /// Writes one frame, bounded in time: a robot that does not read is disconnected rather
    /// than allowed to hold the server's memory.
    pub(super) async fn send(&mut self, message: Message) -> Result<(), End> {
        let limit = self.app.config.limits.write_timeout;
        match timeout(limit, self.ws.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(WsError::WriteBufferFull(_))) | Err(_) => {
                bump(&self.app.metrics.slow_robots_closed);
                log::warn!("{}: the robot does not read: disconnecting it", self.tag());
                Err(End::Failed(
                    "the robot does not read (write timed out)".to_owned(),
                ))
            }
            Ok(Err(error)) => Err(End::Failed(format!("write failed: {error}"))),
        }
    }

    /// Sends a Close frame, reads the robot's frames until its answering Close, and ends the
    /// connection without a reset ([`closing::finish`]), all within [`CLOSE_WAIT`].
    pub(super) async fn close(&mut self, request: CloseRequest) -> End {
        self.close_with(request, true).await
    }

    /// As [`Connection::close`], after a read error that leaves the robot's stream unreadable
    /// as frames (the rest of a message too big, a protocol violation): its bytes are only
    /// drained.
    async fn close_broken(&mut self, request: CloseRequest) -> End {
        self.close_with(request, false).await
    }

    async fn close_with(&mut self, request: CloseRequest, read_answer: bool) -> End {
        let deadline = Instant::now() + CLOSE_WAIT;
        let frame = CloseFrame {
            code: CloseCode::from(request.code),
            reason: request.reason.clone().into(),
        };
        let sent = timeout_at(deadline, self.ws.close(Some(frame))).await;
        if matches!(sent, Ok(Ok(()))) {
            if read_answer {
                let _ = timeout_at(deadline, async {
                    while let Some(Ok(_)) = self.ws.next().await {}
                })
                .await;
            }
            closing::finish(self.ws.get_mut(), deadline).await;
        }
        End::Closed(request)
    }

    async fn finish(mut self, end: End, lasted: Duration) {
        let now = Utc::now();
        for item in self.session.finish() {
            if let Some(sending) = item.job {
                self.app.dispatcher.give_back(
                    sending,
                    now,
                    chrono::TimeDelta::zero(),
                    "the robot's connection closed before the package was written",
                );
            }
        }
        let still_live = self.app.registry.disconnect(&self.session);
        let unacknowledged: Vec<(i64, i32)> = self
            .awaiting_ack
            .drain()
            .chain(
                self.unconfirmed
                    .drain(..)
                    .map(|(sending, _)| (sending.job_id, sending.attempt)),
            )
            .collect();
        if !unacknowledged.is_empty() {
            self.sendings_lost(unacknowledged, now);
        }
        match (&self.robot, still_live) {
            (Some(robot), Some(_)) => {
                let address = robot.address.as_str().to_owned();
                let connection_id = self.session.id().to_string();
                let reason = format!("connection ended: {end}");
                let result = self
                    .app
                    .db
                    .write(move |tx| tx.robot_disconnected(&address, &connection_id, now, &reason))
                    .await;
                if let Err(error) = result {
                    log::error!(
                        "{}: cannot record that the robot is offline: {error}",
                        self.tag()
                    );
                }
                log::info!(
                    "{}: disconnected after {:.1} s, {end}; robot offline",
                    self.tag(),
                    lasted.as_secs_f64()
                );
            }
            (Some(_), None) => log::info!(
                "{}: disconnected after {:.1} s, {end}; the robot stays online on its newer connection",
                self.tag(),
                lasted.as_secs_f64()
            ),
            (None, _) => log::info!(
                "{}: disconnected after {:.1} s, {end}; it never registered",
                self.tag(),
                lasted.as_secs_f64()
            ),
        }
    }

    /// Sendings the robot never acknowledged go out again (on its next connection).
    fn sendings_lost(&mut self, sendings: Vec<(i64, i32)>, now: chrono::DateTime<Utc>) {
        let policy = *self.app.dispatcher.policy();
        let dispatcher = self.app.dispatcher.clone();
        let attempts: std::collections::HashMap<i64, i32> = sendings.iter().copied().collect();
        self.app.db.submit(
            self.tag().to_string(),
            "cannot record unacknowledged sendings",
            move |tx| tx.connection_lost(&sendings, now, &policy),
            move |changed, tag| {
                for (id, status) in changed {
                    log::info!(
                        "{tag}: job {id} was not confirmed before the connection ended: now {}",
                        status.as_str()
                    );
                    dispatcher.wake(id, now);
                    // A pool job goes back to its pool after the resend back-off.
                    if let Some(attempt) = attempts.get(&id) {
                        dispatcher.wake(id, now + rpa_store::DeliveryPolicy::backoff(*attempt));
                    }
                }
            },
        );
    }
}

/// How long a robot may be held at its rate without easing off (refilling half its burst)
/// before it is disconnected.
const SUSTAINED_ABUSE: Duration = Duration::from_secs(5);

/// A token bucket: `burst` frames at once, refilled at `rate` a second.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        Bucket {
            tokens: f64::from(burst.max(1)),
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
    }

    /// Spends a token for a frame that was read (the bucket may go below zero by one frame:
    /// the frame that was already in flight).
    fn take(&mut self) {
        self.refill();
        self.tokens -= 1.0;
    }

    /// Whether the robot left its burst half full: it is not pressing against its rate.
    fn relaxed(&self) -> bool {
        self.tokens >= self.burst / 2.0
    }

    /// `None` when the robot may send now; otherwise how long until it may.
    fn wait(&mut self) -> Option<Duration> {
        self.refill();
        (self.tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }
}
