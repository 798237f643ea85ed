//! The live event stream (`GET /api/events` as Server-Sent Events): one hub task reads every new
//! event once and broadcasts it, rendered, to the subscribers; each subscriber first catches up
//! from the database on its own, then follows the broadcast, filtering in memory.
//!
//! The hub wakes when events are committed ([`Committed`]: this instance's writer, and other
//! instances' notices on PostgreSQL) and reads nothing otherwise, nor while nobody follows the
//! stream. On PostgreSQL it also asks the database for the highest id once a second while idle,
//! in case a notice was lost.
//!
//! A subscriber never misses nor repeats an event at the switch from catching up to following:
//! ids increase in commit order, the hub broadcasts every event after its position in id order,
//! and the subscriber's place in the broadcast is taken together with the hub's position. It
//! reads the database up to that position, then takes from the broadcast only what lies after
//! the last id it looked at.
//!
//! Memory is bounded per subscriber: a consumer that lets [`SUBSCRIBER_BUFFER`] events or
//! [`SUBSCRIBER_BYTES`] pile up, or falls behind the broadcast, or takes nothing for [`STALL`]
//! while catching up, is disconnected: its stream ends (the connection is closed if it still has
//! not taken what was buffered [`STALL`] later), and it resumes with the last id it received.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rpa_store::{EventFilter, EventRecord, StoreError, TypePattern};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot, watch};

use crate::app::App;
use crate::http::listener::CloseConnection;
use crate::http::metrics::{Metrics, bump};
use crate::http::views::CloudEvent;
use crate::tasks::committed::Committed;

/// Events read from the database at a time, by the hub and by a subscriber catching up.
pub(crate) const PAGE: usize = 256;
/// Batches (pages of the hub) the broadcast keeps for subscribers that are a little behind.
const BROADCAST: usize = 64;
/// Events waiting for one consumer before it counts as too slow ...
pub(crate) const SUBSCRIBER_BUFFER: usize = 1024;
/// ... or bytes of them (an event carries its job's package, up to `--max-body`). An event larger
/// than this still goes to a consumer that has taken everything before it.
pub(crate) const SUBSCRIBER_BYTES: usize = 4 * 1024 * 1024;
/// How long a consumer may take nothing while catching up, and how long a disconnected one has
/// to take what was buffered for it before its connection is closed.
pub(crate) const STALL: Duration = Duration::from_secs(10);
/// How often the hub asks PostgreSQL for the highest id while nothing wakes it.
const FALLBACK_POLL: Duration = Duration::from_secs(1);
/// The shortest time between two reads of the hub: what is committed meanwhile is read at once.
const COALESCE: Duration = Duration::from_millis(10);
/// How long the hub waits after the database failed before it reads again.
const RETRY: Duration = Duration::from_secs(1);

/// An event as the stream sends it, rendered once for every subscriber.
#[derive(Debug)]
pub(crate) struct StreamEvent {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) subject: String,
    /// `id: ...`, `event: ...`, `data: <the CloudEvent on one line>` and a blank line.
    pub(crate) frame: Bytes,
}

impl StreamEvent {
    pub(crate) fn render(record: EventRecord) -> StreamEvent {
        let (id, subject) = (record.id, record.subject.clone());
        let event = CloudEvent::from(record);
        let kind = event.kind().to_owned();
        let json = serde_json::to_string(&event).unwrap_or_else(|error| {
            // Cannot happen (the document holds strings and verbatim JSON); an event must not
            // be skipped all the same, or a consumer would see a gap.
            log::error!("cannot render event {id}: {error}");
            serde_json::json!({
                "specversion": "1.0",
                "id": id.to_string(),
                "source": crate::http::views::EVENT_SOURCE,
                "type": kind,
                "subject": subject,
            })
            .to_string()
        });
        let mut frame = String::with_capacity(json.len() + kind.len() + 32);
        let _ = write!(
            frame,
            "id: {}\nevent: {}\ndata: ",
            event.id(),
            one_line(&kind)
        );
        frame.push_str(&one_line(&json));
        frame.push_str("\n\n");
        StreamEvent {
            id,
            kind,
            subject,
            frame: Bytes::from(frame),
        }
    }
}

/// A line break would end an SSE field. In JSON text, line breaks can only be whitespace between
/// tokens (inside strings they are escaped): stored documents that kept a client's formatting
/// are flattened without changing what they say.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        std::borrow::Cow::Owned(text.replace(['\n', '\r'], " "))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// What one subscriber wants: any of `types` (all when empty) about any of `subjects` (all when
/// empty). Subjects are compared as written (`jobs/42`, `robots/001AFFDB45C2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub(crate) types: Vec<TypePattern>,
    pub(crate) subjects: Vec<String>,
}

impl Selection {
    fn matches(&self, event: &StreamEvent) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t.matches(&event.kind)))
            && (self.subjects.is_empty() || self.subjects.contains(&event.subject))
    }

    pub(crate) fn filter(&self, after: i64, limit: usize) -> EventFilter {
        EventFilter {
            after,
            types: self.types.clone(),
            subjects: self.subjects.clone(),
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
        }
    }
}

type Batch = Arc<[StreamEvent]>;

/// The hub's shared side: how far it has broadcast, and the broadcast.
#[derive(Debug)]
pub(crate) struct EventHub {
    state: Mutex<HubState>,
}

#[derive(Debug)]
struct HubState {
    /// Every event up to this id was broadcast (or predates the hub).
    position: i64,
    /// `None` once the hub stopped.
    sender: Option<broadcast::Sender<Batch>>,
}

impl EventHub {
    /// A hub whose broadcast starts after `position` (the last event committed at start).
    pub(crate) fn new(position: i64) -> EventHub {
        EventHub {
            state: Mutex::new(HubState {
                position,
                sender: Some(broadcast::channel(BROADCAST).0),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn position(&self) -> i64 {
        self.lock().position
    }

    fn is_closed(&self) -> bool {
        self.lock().sender.is_none()
    }

    /// A place in the broadcast and the position it starts after: every event after it will be
    /// received. `None` once the hub stopped.
    fn subscribe(&self) -> Option<(broadcast::Receiver<Batch>, i64)> {
        let state = self.lock();
        let receiver = state.sender.as_ref()?.subscribe();
        Some((receiver, state.position))
    }

    fn publish(&self, batch: Vec<StreamEvent>) {
        let Some(last) = batch.last().map(|event| event.id) else {
            return;
        };
        let mut state = self.lock();
        if let Some(sender) = &state.sender {
            // No subscriber: nobody to tell.
            let _ = sender.send(Arc::from(batch));
        }
        state.position = state.position.max(last);
    }

    /// With nobody following, the hub need not read what was committed: whoever subscribes
    /// later reads it from the database. True when it skipped up to `target`.
    fn skip_unwatched(&self, target: i64) -> bool {
        let mut state = self.lock();
        let unwatched = state
            .sender
            .as_ref()
            .is_none_or(|sender| sender.receiver_count() == 0);
        if unwatched {
            state.position = state.position.max(target);
        }
        unwatched
    }

    /// Ends every subscriber's stream once it has taken what was broadcast.
    fn close(&self) {
        self.lock().sender = None;
    }
}

/// Follows the committed events and broadcasts them until `stop`.
pub(crate) async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let hub = &app.event_hub;
    let mut committed = app.committed.subscribe();
    let shared = app.db.shared();
    let mut failing = false;
    let mut last_read = tokio::time::Instant::now();
    loop {
        let target = *committed.borrow_and_update();
        if target > hub.position() && !hub.skip_unwatched(target) {
            // Commits come every few milliseconds under load: a read for each would cost more
            // than the events it carries. What commits meanwhile is read too (and wakes the
            // loop once more, to find the hub past it).
            tokio::select! {
                () = tokio::time::sleep_until(last_read + COALESCE) => {}
                _ = stop.changed() => break,
            }
            last_read = tokio::time::Instant::now();
            match catch_up(&app).await {
                Ok(()) => {
                    if failing {
                        log::info!("event stream: reading events again");
                    }
                    failing = false;
                }
                Err(error) => {
                    if !failing {
                        log::warn!("event stream: cannot read new events: {error}");
                    }
                    failing = true;
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => continue,
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        tokio::select! {
            changed = committed.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(FALLBACK_POLL), if shared => {
                poll_last(&app.db, &app.committed).await;
            }
            _ = stop.changed() => break,
        }
    }
    hub.close();
}

/// Broadcasts every event after the hub's position, a page at a time.
async fn catch_up(app: &App) -> Result<(), StoreError> {
    loop {
        let filter = Selection::default().filter(app.event_hub.position(), PAGE);
        // Rendered on the blocking pool too, off the workers that serve requests.
        let page = app
            .db
            .read(move |conn| Ok(render(conn.events(&filter)?)))
            .await?;
        let full = page.len() >= PAGE;
        app.event_hub.publish(page);
        if !full {
            return Ok(());
        }
    }
}

fn render(records: Vec<EventRecord>) -> Vec<StreamEvent> {
    records.into_iter().map(StreamEvent::render).collect()
}

/// PostgreSQL: another instance's notice may have been lost (a listener that reconnected):
/// the highest id committed, asked directly.
async fn poll_last(db: &crate::db::Db, committed: &Committed) {
    match db.read(|conn| conn.last_event_id()).await {
        Ok(last) => committed.advance(last),
        Err(error) => log::debug!("event stream: cannot read the last event id: {error}"),
    }
}

/// One subscriber's side of the stream: the rendered frames to send, in order. Dropping it ends
/// the subscription.
pub(crate) struct Subscription {
    frames: mpsc::Receiver<Queued>,
    /// Dropped with the subscription: tells the follower the consumer is gone.
    _alive: oneshot::Sender<()>,
    _counted: Counted,
}

impl Subscription {
    /// The next frame to send; `None` once the stream has ended.
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Bytes>> {
        // The frame's share of the byte budget is given back as it leaves the queue.
        self.frames
            .poll_recv(cx)
            .map(|queued| queued.map(|queued| queued.frame))
    }
}

#[cfg(test)]
impl Subscription {
    /// A subscription fed by hand through the outbox.
    pub(crate) fn detached() -> (Subscription, Outbox) {
        let (outbox, frames) = Outbox::new();
        let subscription = Subscription {
            frames,
            _alive: oneshot::channel().0,
            _counted: Counted::new(&Arc::new(Metrics::default())),
        };
        (subscription, outbox)
    }
}

/// A frame waiting for its consumer, holding its bytes' share of the budget.
struct Queued {
    frame: Bytes,
    _budget: OwnedSemaphorePermit,
}

/// What the follower puts frames in: bounded in events (the channel) and in bytes (a permit per
/// byte, given back as each frame leaves).
pub(crate) struct Outbox {
    frames: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
}

/// Why a frame was not queued.
enum Refused {
    /// The consumer has not taken enough of what was queued.
    Full,
    /// The consumer is gone.
    Closed,
}

impl Outbox {
    fn new() -> (Outbox, mpsc::Receiver<Queued>) {
        let (frames, receiver) = mpsc::channel(SUBSCRIBER_BUFFER);
        let outbox = Outbox {
            frames,
            budget: Arc::new(Semaphore::new(SUBSCRIBER_BYTES)),
        };
        (outbox, receiver)
    }

    fn share(frame: &Bytes) -> u32 {
        u32::try_from(frame.len().min(SUBSCRIBER_BYTES)).unwrap_or(u32::MAX)
    }

    /// Queues `frame` if there is room now.
    fn try_push(&self, frame: Bytes) -> Result<(), Refused> {
        let budget = Arc::clone(&self.budget)
            .try_acquire_many_owned(Outbox::share(&frame))
            .map_err(|error| match error {
                tokio::sync::TryAcquireError::NoPermits => Refused::Full,
                tokio::sync::TryAcquireError::Closed => Refused::Closed,
            })?;
        self.frames
            .try_send(Queued {
                frame,
                _budget: budget,
            })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            })
    }

    /// Queues `frame`, waiting for room as long as it takes.
    pub(crate) async fn push(&self, frame: Bytes) -> Result<(), ()> {
        let budget = Arc::clone(&self.budget)
            .acquire_many_owned(Outbox::share(&frame))
            .await
            .map_err(|_| ())?;
        self.frames
            .send(Queued {
                frame,
                _budget: budget,
            })
            .await
            .map_err(|_| ())
    }

    async fn closed(&self) {
        self.frames.closed().await;
    }
}

/// Counts a subscriber in the metrics for as long as it lives.
struct Counted(Arc<Metrics>);

impl Counted {
    fn new(metrics: &Arc<Metrics>) -> Counted {
        metrics
            .event_stream_subscribers
            .fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(metrics))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0
            .event_stream_subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts following the events for one consumer: after `after` (from the database first), or,
/// with `None`, from the next new event. `close` closes the consumer's connection.
pub(crate) fn subscribe(
    app: Arc<App>,
    selection: Selection,
    after: Option<i64>,
    close: Option<CloseConnection>,
) -> Subscription {
    let (outbox, frames) = Outbox::new();
    let (alive, gone) = oneshot::channel();
    let counted = Counted::new(&app.metrics);
    tokio::spawn(async move {
        let end = follow(&app, &selection, after, &outbox).await;
        match end {
            End::Slow(why) => {
                bump(&app.metrics.event_streams_slow_closed);
                log::info!(
                    "event stream closed: the consumer {why}; it resumes with the last id it received"
                );
                // The stream ends once the consumer has taken what was buffered for it; one
                // that does not even take that loses its connection.
                drop(outbox);
                if tokio::time::timeout(STALL, gone).await.is_err()
                    && let Some(close) = close
                {
                    close.close();
                }
            }
            End::Trimmed => {
                log::info!("event stream closed: retention trimmed events it had not sent yet");
            }
            End::Failed(error) => log::warn!("event stream closed: {error}"),
            End::Gone | End::Stopped => {}
        }
    });
    Subscription {
        frames,
        _alive: alive,
        _counted: counted,
    }
}

/// Why a subscriber's stream ended.
enum End {
    /// The consumer hung up.
    Gone,
    /// The server is stopping.
    Stopped,
    /// The consumer did not keep up (what it did not do).
    Slow(&'static str),
    /// Retention deleted events the consumer had not received.
    Trimmed,
    Failed(StoreError),
}

async fn follow(app: &App, selection: &Selection, after: Option<i64>, outbox: &Outbox) -> End {
    let hub = &app.event_hub;
    // Most of the way from the database, without a place in the broadcast to fall behind in.
    let early = match after {
        Some(after) => match backfill(app, selection, after, hub.position(), outbox).await {
            Ok(cursor) => Some(cursor),
            Err(end) => return end,
        },
        None => None,
    };
    let Some((mut live, position)) = hub.subscribe() else {
        return End::Stopped;
    };
    // The last id looked at (sent, or filtered out).
    let mut cursor = match early {
        Some(cursor) => match backfill(app, selection, cursor, position, outbox).await {
            Ok(cursor) => cursor,
            Err(end) => return end,
        },
        None => position.max(app.committed.last()),
    };
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(batch) => {
                    for event in batch.iter() {
                        if event.id <= cursor {
                            continue;
                        }
                        cursor = event.id;
                        if !selection.matches(event) {
                            continue;
                        }
                        match outbox.try_push(event.frame.clone()) {
                            Ok(()) => {}
                            Err(Refused::Full) => return End::Slow("let its buffer fill up"),
                            Err(Refused::Closed) => return End::Gone,
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return End::Slow("fell behind the live events");
                }
                Err(broadcast::error::RecvError::Closed) => return End::Stopped,
            },
            () = outbox.closed() => return End::Gone,
        }
    }
}

/// Sends the selected events after `cursor` up to `upto` from the database; the new cursor.
async fn backfill(
    app: &App,
    selection: &Selection,
    mut cursor: i64,
    upto: i64,
    outbox: &Outbox,
) -> Result<i64, End> {
    while cursor < upto {
        if app.event_hub.is_closed() {
            return Err(End::Stopped);
        }
        let filter = selection.filter(cursor, PAGE);
        let (floor, page) = app
            .db
            .read(move |conn| Ok((conn.event_floor()?, render(conn.events(&filter)?))))
            .await
            .map_err(End::Failed)?;
        if floor > cursor {
            return Err(End::Trimmed);
        }
        let full = page.len() >= PAGE;
        let mut last = cursor;
        for event in page {
            if event.id > upto {
                // The rest comes from the broadcast.
                return Ok(upto);
            }
            last = event.id;
            match tokio::time::timeout(STALL, outbox.push(event.frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(End::Gone),
                Err(_) => return Err(End::Slow("took nothing for a while")),
            }
        }
        // A page that is not full holds every selected event up to `upto`: the hub read them
        // before, so they were all visible to this read.
        cursor = if full { last } else { upto };
    }
    Ok(cursor)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use rpa_store::{RobotRecord, SubjectState};

    use super::*;

    #[test]
    fn an_event_is_rendered_once_as_an_sse_frame_with_its_document_on_one_line() {
        let at = Utc.with_ymd_and_hms(2026, 7, 15, 9, 0, 0).unwrap();
        // Metadata is kept as the robot sent it, line breaks and all.
        let robot = RobotRecord {
            address: "001AFFDB45C2".into(),
            name: "R".into(),
            user_id: None,
            online: true,
            connection_id: None,
            protocol: 1,
            first_seen: at,
            last_seen: at,
            metadata: "{\r\n  \"note\": \"a\\nb\"\n}".into(),
            instance: None,
        };
        let event = StreamEvent::render(EventRecord {
            id: 7,
            kind: "robot.online".into(),
            subject: "robots/001AFFDB45C2".into(),
            at,
            reason: Some("connected".into()),
            state: SubjectState::Robot(Box::new(robot)),
        });
        assert_eq!((event.id, event.kind.as_str()), (7, "robot.online"));
        let text = std::str::from_utf8(&event.frame).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.len(), 5, "{text:?}");
        assert_eq!(lines[0], "id: 7");
        assert_eq!(lines[1], "event: robot.online");
        assert_eq!(lines[3..], ["", ""]);
        let document: serde_json::Value =
            serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(document["id"], "7");
        assert_eq!(document["subject"], "robots/001AFFDB45C2");
        assert_eq!(document["data"]["reason"], "connected");
        assert_eq!(document["data"]["robot"]["metadata"]["note"], "a\nb");
    }

    #[tokio::test]
    async fn an_outbox_is_bounded_in_events_and_in_bytes() {
        let (outbox, mut frames) = Outbox::new();
        let big = Bytes::from(vec![b'x'; SUBSCRIBER_BYTES / 2 + 1]);
        assert!(outbox.try_push(big.clone()).is_ok());
        assert!(matches!(outbox.try_push(big.clone()), Err(Refused::Full)));
        // Taken: its bytes are free again.
        drop(frames.recv().await.unwrap());
        assert!(outbox.try_push(big.clone()).is_ok());
        drop(frames.recv().await.unwrap());
        // Larger than the whole budget: it goes when nothing else waits.
        let huge = Bytes::from(vec![b'x'; SUBSCRIBER_BYTES * 2]);
        assert!(outbox.try_push(Bytes::from_static(b"small")).is_ok());
        assert!(matches!(outbox.try_push(huge.clone()), Err(Refused::Full)));
        drop(frames.recv().await.unwrap());
        assert!(outbox.try_push(huge).is_ok());
        drop(frames.recv().await.unwrap());
        // In events.
        for _ in 0..SUBSCRIBER_BUFFER {
            assert!(outbox.try_push(Bytes::from_static(b"e")).is_ok());
        }
        assert!(matches!(
            outbox.try_push(Bytes::from_static(b"e")),
            Err(Refused::Full)
        ));
        drop(frames);
        assert!(matches!(
            outbox.try_push(Bytes::from_static(b"e")),
            Err(Refused::Closed)
        ));
    }
}
