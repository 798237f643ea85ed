//! One webhook's deliveries, in rounds.
//!
//! A round reads the events after the cursor (a page of the webhook's types) and the owed
//! events whose retry is due, delivers them, subjects concurrently and each subject's events one
//! after the other in id order, and records in one write what happened: the attempts, the
//! backlog's changes and the new cursor. A failed event enters the backlog with its next attempt
//! a back-off away; the later events of its subject are held behind it (they join the backlog
//! untried) until it is delivered, while other subjects go on. Until the write commits nothing
//! counts: a crash, a stop or a failed write means the same events are delivered again (at least
//! once). The memory follows the database only after a write committed; after a failed one it
//! is read back.
//!
//! Between rounds the worker sleeps until an event is committed or a retry is due.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt as _;
use hyper::header::{HeaderName, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};
use rpa_store::{
    ClaimedWebhook, DeliveryOutcome, EventFilter, EventRecord, NewDelivery, OwedEvent,
    ProgressOutcome, StoreError, TypePattern, WebhookFormat, WebhookProgress,
};
use tokio::sync::watch;

use super::client::{DeliveryClient, Failure, Target};
use super::signing::Secret;
use crate::app::{App, delta};
use crate::http::metrics::bump;
use crate::http::views::CloudEvent;

/// Events read after the cursor per round.
const PAGE: i64 = 500;
/// Owed events kept per webhook. While its backlog holds this many, no new events are read (the
/// cursor waits; the events wait in the database), so a dead receiver costs bounded memory and
/// rows. It is disabled after `--webhook-retry-for` all the same.
pub(crate) const MAX_OWED: usize = 10_000;
/// Subjects delivered at the same time, per webhook.
const CONCURRENCY: usize = 16;
/// Subjects whose retries are due taken per round, and owed events per subject.
const DUE_SUBJECTS_PER_ROUND: usize = 64;
const OWED_PER_SUBJECT_PER_ROUND: usize = 100;
/// Back-off: 1 s, 2 s, 4 s, ... up to 10 minutes, each within ±25 %.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How long to wait before trying again when the database cannot be read or written.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Rounds woken by new events start at most this often: under a stream of events a round
/// takes what gathered meanwhile, so the worker's reads and writes stay few however many
/// commits there are.
const MIN_ROUND_INTERVAL: Duration = Duration::from_millis(25);
/// A first attempt that succeeded is recorded for `/deliveries` at most this often (failures,
/// retries and skipped events always are): at thousands of events per second a row each would
/// double what every job costs the database writer. `/metrics` counts them all.
const SUCCESS_ROW_INTERVAL: Duration = Duration::from_secs(1);
/// Attempts recorded between two trims of the webhook's attempts.
const TRIM_EVERY: usize = 100;

/// The nominal wait before attempt `attempts + 1`, after `attempts` failed attempts.
pub(crate) fn nominal_backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// The nominal wait, somewhere within ±25 %, so that the retries of many events do not all come
/// at once.
fn backoff(attempts: i32) -> Duration {
    let mut bytes = [0_u8; 4];
    let unit = match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    nominal_backoff(attempts).mul_f64(0.75 + 0.5 * unit)
}

/// Runs the deliveries of the webhook `claim` names until it is taken away (None) or `stop`.
pub(super) async fn run(
    app: Arc<App>,
    mut claim: watch::Receiver<Option<ClaimedWebhook>>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(webhook) = claim.borrow_and_update().clone() else {
        return;
    };
    let id = webhook.record.id;
    let mut worker = loop {
        match Worker::load(&app, webhook.clone()).await {
            Ok(Some(worker)) => break worker,
            Ok(None) => return,
            Err(error) => {
                log::warn!("webhook {id}: cannot read where its deliveries stand: {error}");
                tokio::select! {
                    () = tokio::time::sleep(STORE_RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let mut committed = app.committed.subscribe();
    let mut last_round = Instant::now();
    loop {
        if Utc::now() >= app.webhooks.held_until() {
            // This instance's hold may be passing (the database was out of reach): deliver
            // nothing another instance may be delivering too.
            tokio::select! {
                () = tokio::time::sleep(STORE_RETRY) => continue,
                _ = claim.changed() => {}
                _ = stop.changed() => break,
            }
        } else {
            last_round = Instant::now();
            let round = tokio::select! {
                round = worker.round() => round,
                _ = stop.changed() => break,
            };
            app.webhooks.set_owed_since(id, Some(worker.owed_since()));
            match round {
                Ok(Round::Done { more: true }) => {
                    if claim.has_changed().unwrap_or(true) && !worker.follow(&claim) {
                        break;
                    }
                    continue;
                }
                Ok(Round::Done { more: false }) => {}
                Ok(Round::Over) => break,
                Err(error) => {
                    log::warn!("webhook {id}: deliveries cannot be recorded: {error}");
                    tokio::select! {
                        () = tokio::time::sleep(STORE_RETRY) => {}
                        _ = stop.changed() => break,
                    }
                    match worker.reload().await {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(error) => {
                            log::warn!("webhook {id}: cannot read its deliveries back: {error}");
                            continue;
                        }
                    }
                }
            }
            if claim.has_changed().unwrap_or(true) && !worker.follow(&claim) {
                break;
            }
            if worker.wants_events() && app.committed.last() > worker.cursor {
                continue;
            }
        }
        let wait_events = worker.wants_events();
        let retry = worker.next_retry();
        tokio::select! {
            changed = committed.changed(), if wait_events => {
                if changed.is_err() {
                    break;
                }
                let soonest = last_round + MIN_ROUND_INTERVAL;
                tokio::select! {
                    () = tokio::time::sleep_until(soonest.into()) => {}
                    _ = stop.changed() => break,
                }
            }
            () = sleep_until(retry), if retry.is_some() => {}
            changed = claim.changed() => {
                if changed.is_err() || !worker.follow(&claim) {
                    break;
                }
            }
            _ = stop.changed() => break,
        }
    }
    app.webhooks.set_owed_since(id, None);
    // The manager looks again: the webhook may have been enabled again meanwhile.
    app.webhooks.changed();
}

async fn sleep_until(at: Option<DateTime<Utc>>) {
    let wait = at
        .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(wait).await;
}

/// How a round ended.
enum Round {
    /// Recorded; `more` when there is more to do at once (a full page, or more retries due).
    Done { more: bool },
    /// The webhook is no longer this instance's to deliver (deleted, disabled, taken over).
    Over,
}

struct Worker {
    app: Arc<App>,
    webhook: ClaimedWebhook,
    /// None when the URL is refused now (e.g. `--webhook-deny` changed since its creation):
    /// every attempt fails as `address_not_allowed`.
    target: Option<Target>,
    secret: Secret,
    patterns: Vec<TypePattern>,
    cursor: i64,
    /// The backlog, by subject, each in id order.
    owed: BTreeMap<String, VecDeque<OwedEvent>>,
    owed_count: usize,
    /// Read new events in the first round whatever the committed id says.
    fresh: bool,
    /// When a successful first attempt was last recorded.
    success_recorded: Option<Instant>,
    /// Attempts recorded since the last trim.
    untrimmed: usize,
}

/// An event to deliver in a round, in its subject's order.
enum Item {
    /// From the backlog; its record None when the event is gone (trimmed with its job).
    Owed(OwedEvent, Option<EventRecord>),
    New(EventRecord),
}

/// What one subject's deliveries of a round did.
#[derive(Default)]
struct Done {
    deliveries: Vec<NewDelivery>,
    settled: Vec<i64>,
    owed: Vec<OwedEvent>,
}

impl Worker {
    /// The worker with the webhook's cursor and backlog as stored; None when it is gone.
    async fn load(app: &Arc<App>, webhook: ClaimedWebhook) -> Result<Option<Worker>, StoreError> {
        let id = webhook.record.id;
        let secret = match Secret::parse(&webhook.secret) {
            Ok(secret) => secret,
            Err(error) => {
                log::error!(
                    "webhook {id}: its stored secret cannot be used ({error}); not delivering"
                );
                return Ok(None);
            }
        };
        let target = Target::parse(&webhook.record.url, app.webhooks.policy()).ok();
        let mut worker = Worker {
            app: Arc::clone(app),
            patterns: webhook.record.patterns(),
            webhook,
            target,
            secret,
            cursor: 0,
            owed: BTreeMap::new(),
            owed_count: 0,
            fresh: true,
            success_recorded: None,
            untrimmed: 0,
        };
        Ok(worker.reload().await?.then_some(worker))
    }

    /// Reads the cursor and backlog back; false when the webhook is gone.
    async fn reload(&mut self) -> Result<bool, StoreError> {
        let id = self.webhook.record.id;
        let Some((cursor, owed)) = self.app.db.read(move |c| c.webhook_state(id)).await? else {
            return Ok(false);
        };
        self.cursor = cursor;
        self.owed.clear();
        self.owed_count = owed.len();
        for entry in owed {
            self.owed
                .entry(entry.subject.clone())
                .or_default()
                .push_back(entry);
        }
        self.fresh = true;
        Ok(true)
    }

    /// Takes the webhook as claimed now; false when it is no longer this instance's.
    fn follow(&mut self, claim: &watch::Receiver<Option<ClaimedWebhook>>) -> bool {
        let Some(webhook) = claim.borrow().clone() else {
            return false;
        };
        self.target = Target::parse(&webhook.record.url, self.app.webhooks.policy()).ok();
        self.webhook = webhook;
        true
    }

    fn wants_events(&self) -> bool {
        self.owed_count < MAX_OWED
    }

    /// When the first retry is due.
    fn next_retry(&self) -> Option<DateTime<Utc>> {
        self.owed
            .values()
            .filter_map(VecDeque::front)
            .map(|head| head.next_attempt_at)
            .min()
    }

    /// When the oldest event owed happened; None when nothing is owed.
    fn owed_since(&self) -> Option<DateTime<Utc>> {
        self.owed
            .values()
            .filter_map(VecDeque::front)
            .map(|head| head.event_at)
            .min()
    }

    async fn round(&mut self) -> Result<Round, StoreError> {
        let now = Utc::now();
        let due: Vec<(String, i64, usize)> = self
            .owed
            .iter()
            .filter_map(|(subject, queue)| {
                let head = queue.front()?;
                (head.next_attempt_at <= now).then(|| {
                    let take = queue.len().min(OWED_PER_SUBJECT_PER_ROUND);
                    (subject.clone(), head.event_id, take)
                })
            })
            .take(DUE_SUBJECTS_PER_ROUND + 1)
            .collect();
        let more_due = due.len() > DUE_SUBJECTS_PER_ROUND;
        let due = &due[..due.len().min(DUE_SUBJECTS_PER_ROUND)];
        let read_new =
            self.wants_events() && (self.fresh || self.app.committed.last() > self.cursor);
        if due.is_empty() && !read_new {
            return Ok(Round::Done { more: false });
        }

        let (cursor, patterns) = (self.cursor, self.patterns.clone());
        let wanted: Vec<(String, i64, usize)> = due.to_vec();
        let (mut owed_events, page, upto) = self
            .app
            .db
            .read(move |c| {
                let mut found: HashMap<i64, EventRecord> = HashMap::new();
                for (subject, head, take) in wanted {
                    let events = c.events(&EventFilter {
                        after: head - 1,
                        types: patterns.clone(),
                        subjects: vec![subject],
                        limit: i64::try_from(take).unwrap_or(i64::MAX),
                    })?;
                    found.extend(events.into_iter().map(|event| (event.id, event)));
                }
                let (page, upto) = if read_new {
                    let upto = c.last_event_id()?;
                    let page = c.events(&EventFilter {
                        after: cursor,
                        types: patterns,
                        subjects: Vec::new(),
                        limit: PAGE,
                    })?;
                    (page, upto)
                } else {
                    (Vec::new(), cursor)
                };
                Ok((found, page, upto))
            })
            .await?;
        let full_page = i64::try_from(page.len()).unwrap_or(i64::MAX) >= PAGE;
        let new_cursor = match page.last() {
            Some(last) if full_page => last.id,
            Some(last) => last.id.max(upto),
            None => upto.max(self.cursor),
        };

        // The subjects' chains, in id order each.
        let mut chains: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        // Subjects whose whole backlog is in their chain: their new events may follow it.
        let mut open: Vec<String> = Vec::new();
        for (subject, _, take) in due {
            let Some(queue) = self.owed.get(subject) else {
                continue;
            };
            let items: Vec<Item> = queue
                .iter()
                .take(*take)
                .map(|owed| Item::Owed(owed.clone(), owed_events.remove(&owed.event_id)))
                .collect();
            if *take == queue.len() {
                open.push(subject.clone());
            }
            chains.insert(subject.clone(), items);
        }
        let mut held: Vec<OwedEvent> = Vec::new();
        for event in page {
            let owes = self.owed.contains_key(&event.subject);
            if owes && !open.contains(&event.subject) {
                held.push(held_event(&event, now));
            } else {
                chains
                    .entry(event.subject.clone())
                    .or_default()
                    .push(Item::New(event));
            }
        }

        let client = Arc::clone(&self.app.webhooks.client);
        let target = self.target.clone();
        let secret = self.secret.clone();
        let format = self.webhook.record.format;
        let results: Vec<Done> = futures_util::stream::iter(chains.into_values())
            .map(|items| deliver(&client, target.as_ref(), &secret, format, items))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;

        let mut progress = WebhookProgress {
            webhook_id: self.webhook.record.id,
            cursor: new_cursor,
            deliveries: Vec::new(),
            owed: held,
            settled: Vec::new(),
            now: Utc::now(),
            give_up_before: Utc::now() - delta(self.app.config.webhook_retry_for),
            trim: false,
        };
        for done in results {
            self.count(&done.deliveries);
            for delivery in done.deliveries {
                if self.worth_a_row(&delivery) {
                    progress.deliveries.push(delivery);
                }
            }
            progress.settled.extend(done.settled);
            progress.owed.extend(done.owed);
        }
        self.untrimmed += progress.deliveries.len();
        progress.trim = self.untrimmed >= TRIM_EVERY;
        let progress = Arc::new(progress);
        let written = Arc::clone(&progress);
        let outcome = self
            .app
            .db
            .write(move |tx| tx.record_webhook_progress(&written))
            .await?;
        if progress.trim {
            self.untrimmed = 0;
        }
        match outcome {
            ProgressOutcome::Recorded => {}
            ProgressOutcome::NotOwned => return Ok(Round::Over),
            ProgressOutcome::Disabled(record) => {
                log::warn!(
                    "webhook {} (to {}) disabled: {}",
                    record.id,
                    self.target
                        .as_ref()
                        .map_or("a refused address", Target::host),
                    record
                        .disabled_reason
                        .as_deref()
                        .unwrap_or("it failed too long")
                );
                return Ok(Round::Over);
            }
        }
        self.apply(&progress);
        self.fresh = false;
        Ok(Round::Done {
            more: full_page || more_due,
        })
    }

    /// Makes the memory what the committed write made the database.
    fn apply(&mut self, progress: &WebhookProgress) {
        self.cursor = self.cursor.max(progress.cursor);
        for settled in &progress.settled {
            for queue in self.owed.values_mut() {
                if let Some(index) = queue.iter().position(|owed| owed.event_id == *settled) {
                    queue.remove(index);
                    break;
                }
            }
        }
        for owed in &progress.owed {
            let queue = self.owed.entry(owed.subject.clone()).or_default();
            match queue
                .iter_mut()
                .find(|entry| entry.event_id == owed.event_id)
            {
                Some(entry) => *entry = owed.clone(),
                None => queue.push_back(owed.clone()),
            }
        }
        self.owed.retain(|_, queue| !queue.is_empty());
        self.owed_count = self.owed.values().map(VecDeque::len).sum();
    }

    /// Whether the attempt gets a row of `/deliveries` (see [`SUCCESS_ROW_INTERVAL`]).
    fn worth_a_row(&mut self, delivery: &NewDelivery) -> bool {
        if delivery.outcome != DeliveryOutcome::Delivered || delivery.attempt > 1 {
            return true;
        }
        let due = self
            .success_recorded
            .is_none_or(|at| at.elapsed() >= SUCCESS_ROW_INTERVAL);
        if due {
            self.success_recorded = Some(Instant::now());
        }
        due
    }

    fn count(&self, deliveries: &[NewDelivery]) {
        let metrics = &self.app.metrics;
        for delivery in deliveries {
            bump(match delivery.outcome {
                DeliveryOutcome::Delivered => &metrics.webhook_delivered,
                DeliveryOutcome::Failed => &metrics.webhook_failed,
                DeliveryOutcome::Skipped => &metrics.webhook_skipped,
            });
        }
    }
}

/// A new event of a subject that waits behind a failed one: owed, not tried yet.
fn held_event(event: &EventRecord, now: DateTime<Utc>) -> OwedEvent {
    OwedEvent {
        event_id: event.id,
        subject: event.subject.clone(),
        event_at: event.at,
        attempts: 0,
        first_attempt_at: None,
        next_attempt_at: now,
    }
}

/// Delivers one subject's events in order, until one fails: it is owed again (or for the first
/// time), and the new events after it are held.
async fn deliver(
    client: &DeliveryClient,
    target: Option<&Target>,
    secret: &Secret,
    format: WebhookFormat,
    items: Vec<Item>,
) -> Done {
    let mut done = Done::default();
    let mut items = items.into_iter();
    while let Some(item) = items.next() {
        let (event, owed) = match item {
            Item::Owed(owed, Some(event)) => (event, Some(owed)),
            Item::Owed(owed, None) => {
                // Gone from the database (its job was purged): nothing left to deliver.
                done.deliveries.push(NewDelivery {
                    event_id: owed.event_id,
                    attempt: 0,
                    at: Utc::now(),
                    outcome: DeliveryOutcome::Skipped,
                    http_status: None,
                    error: None,
                    duration_ms: None,
                });
                done.settled.push(owed.event_id);
                continue;
            }
            Item::New(event) => (event, None),
        };
        let attempt = owed.as_ref().map_or(0, |owed| owed.attempts) + 1;
        let (answer, at, took) = post(client, target, secret, format, &event).await;
        let delivered = matches!(answer, Ok(status) if (200..300).contains(&status));
        done.deliveries.push(NewDelivery {
            event_id: event.id,
            attempt,
            at,
            outcome: if delivered {
                DeliveryOutcome::Delivered
            } else {
                DeliveryOutcome::Failed
            },
            http_status: answer.ok(),
            error: answer.err().map(|failure| failure.as_str().to_owned()),
            duration_ms: Some(i64::try_from(took.as_millis()).unwrap_or(i64::MAX)),
        });
        if delivered {
            if owed.is_some() {
                done.settled.push(event.id);
            }
            continue;
        }
        let wait = backoff(attempt);
        log::debug!(
            "webhook delivery of event {} failed ({}); attempt {} in {:.1} s",
            event.id,
            match answer {
                Ok(status) => format!("status {status}"),
                Err(failure) => failure.as_str().to_owned(),
            },
            attempt + 1,
            wait.as_secs_f64()
        );
        done.owed.push(OwedEvent {
            event_id: event.id,
            subject: event.subject.clone(),
            event_at: event.at,
            attempts: attempt,
            first_attempt_at: Some(owed.and_then(|owed| owed.first_attempt_at).unwrap_or(at)),
            next_attempt_at: at + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX),
        });
        for rest in items.by_ref() {
            // Owed ones stay as they are; new ones join the backlog behind it.
            if let Item::New(event) = rest {
                done.owed.push(held_event(&event, at));
            }
        }
    }
    done
}

/// One attempt: the answer's status or why there was none, when it started, how long it took.
async fn post(
    client: &DeliveryClient,
    target: Option<&Target>,
    secret: &Secret,
    format: WebhookFormat,
    event: &EventRecord,
) -> (Result<u16, Failure>, DateTime<Utc>, Duration) {
    let at = Utc::now();
    let started = Instant::now();
    let Some(target) = target else {
        return (Err(Failure::AddressNotAllowed), at, started.elapsed());
    };
    let cloud = CloudEvent::from(event.clone());
    let body = match body(format, &cloud, event) {
        Ok(body) => body,
        Err(error) => {
            log::error!(
                "webhook: event {} ({}) cannot be encoded: {error}",
                cloud.id(),
                cloud.kind()
            );
            return (Err(Failure::Connection), at, started.elapsed());
        }
    };
    let timestamp = at.timestamp();
    let signature = secret.sign(cloud.id(), timestamp, &body);
    let Some(headers) = headers(cloud.id(), timestamp, &signature) else {
        return (Err(Failure::Connection), at, started.elapsed());
    };
    let answer = client.post(target, &headers, body).await;
    (answer, at, started.elapsed())
}

fn body(
    format: WebhookFormat,
    cloud: &CloudEvent,
    event: &EventRecord,
) -> Result<Bytes, serde_json::Error> {
    Ok(Bytes::from(match format {
        WebhookFormat::CloudEvents => serde_json::to_vec(cloud)?,
        WebhookFormat::Chat => super::chat::body(event),
    }))
}

/// The Standard Webhooks headers of one attempt.
fn headers(id: &str, timestamp: i64, signature: &str) -> Option<[(HeaderName, HeaderValue); 3]> {
    Some([
        (
            HeaderName::from_static("webhook-id"),
            HeaderValue::from_str(id).ok()?,
        ),
        (
            HeaderName::from_static("webhook-timestamp"),
            HeaderValue::from(timestamp),
        ),
        (
            HeaderName::from_static("webhook-signature"),
            HeaderValue::from_str(signature).ok()?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_a_second_to_ten_minutes_within_a_quarter() {
        let nominal: Vec<u64> = (1..=12).map(|n| nominal_backoff(n).as_secs()).collect();
        assert_eq!(nominal, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(nominal_backoff(1000), MAX_BACKOFF);
        for attempts in [1, 2, 3, 11] {
            let nominal = nominal_backoff(attempts).as_secs_f64();
            let waits: Vec<f64> = (0..200).map(|_| backoff(attempts).as_secs_f64()).collect();
            assert!(
                waits
                    .iter()
                    .all(|w| *w >= nominal * 0.75 && *w <= nominal * 1.25),
                "{waits:?}"
            );
            let spread = waits.iter().cloned().fold(f64::MIN, f64::max)
                - waits.iter().cloned().fold(f64::MAX, f64::min);
            assert!(spread > nominal * 0.2, "jitter: {spread}");
        }
    }
}
