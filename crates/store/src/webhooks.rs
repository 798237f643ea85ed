//! Webhooks: receivers of the events (docs/EVENTS.md), what each is still owed, and what was
//! tried.
//!
//! A webhook does not copy events: it keeps a cursor into `events` (the last id it handled) and
//! a backlog of the events it still owes after a failure, with the later events of the same
//! subject held behind them, so that a subject's events reach the receiver in id order. The
//! server's delivery worker reads events after the cursor, delivers them, and records in one
//! write how far it got: the new cursor, the attempts, and the backlog's changes
//! ([`WriteTx::record_webhook_progress`]). A crash before that write delivers the same events
//! again (at least once).
//!
//! Several instances may share a PostgreSQL database; one delivers a given webhook at a time.
//! It holds the webhook's row (`owner`) until `lease_until`, renewed while it runs; a webhook
//! whose owner's lease passed, or whose owner's instance row is gone (reaped, or retired at an
//! orderly stop), is claimed by the next instance that looks ([`WriteTx::claim_webhooks`]).
//! Progress is recorded only by the owner, so a slow former owner cannot move a cursor back.
//!
//! The secret signs deliveries; it leaves this crate only in [`ClaimedWebhook`] (the worker) and
//! in the answer to the creation. [`WebhookRecord`] has none, and the `webhook.disabled` event's
//! snapshot is made from it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::connection::{DbConnection, per_backend};
use crate::events::{EventFilter, EventType, TypePattern};
use crate::schema::{instances, webhook_backlog, webhook_deliveries, webhooks};
use crate::time::{Micros, OptionalMicros, from_micros, to_micros};
use crate::{Corruption, ReadConn, StoreError, WriteTx};

/// Attempts kept per webhook for `/deliveries`: older ones are deleted as new ones come (a
/// hundred or so more may wait for the next trim).
pub const DELIVERIES_KEPT: i64 = 1_000;

/// Rows per insert statement.
const CHUNK: usize = 500;

/// The body a webhook's deliveries carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The event as a CloudEvents 1.0 JSON document.
    CloudEvents,
    /// `{"text": "<one line>"}`, as the incoming webhooks of chat tools take it.
    Chat,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::CloudEvents => "cloudevents",
            WebhookFormat::Chat => "chat",
        }
    }

    pub fn parse(text: &str) -> Option<WebhookFormat> {
        [WebhookFormat::CloudEvents, WebhookFormat::Chat]
            .into_iter()
            .find(|format| format.as_str() == text)
    }
}

/// A webhook as stored, without its secret: what the API shows, and the `webhook.disabled`
/// event's snapshot (`{"webhook": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookRecord {
    pub id: i64,
    pub url: String,
    /// Patterns: `job.failed`, `robot.*`.
    pub types: Vec<String>,
    pub description: String,
    pub format: WebhookFormat,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

impl WebhookRecord {
    /// The patterns of its types.
    pub fn patterns(&self) -> Vec<TypePattern> {
        self.types.iter().map(|t| TypePattern::parse(t)).collect()
    }
}

/// A webhook this instance delivers, with what signs its deliveries. Debug leaves the secret
/// out.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimedWebhook {
    pub record: WebhookRecord,
    /// `whsec_` + base64.
    pub secret: String,
}

impl std::fmt::Debug for ClaimedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedWebhook")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhooks, check_for_backend(crate::connection::MultiBackend))]
struct WebhookRow {
    id: i64,
    url: String,
    types: String,
    description: String,
    format: String,
    active: bool,
    #[diesel(deserialize_as = Micros)]
    created_at: DateTime<Utc>,
    #[diesel(deserialize_as = OptionalMicros)]
    disabled_at: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
}

fn unreadable(
    column: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StoreError {
    StoreError::Corrupt(Corruption::Unreadable {
        column: Some(column.to_owned()),
        source: source.into(),
    })
}

impl TryFrom<WebhookRow> for WebhookRecord {
    type Error = StoreError;

    fn try_from(row: WebhookRow) -> Result<Self, StoreError> {
        let types: Vec<String> = serde_json::from_str(&row.types)
            .map_err(|error| unreadable("webhooks.types", error))?;
        let format = WebhookFormat::parse(&row.format).ok_or_else(|| {
            unreadable(
                "webhooks.format",
                crate::UnknownValue::new("webhook format", row.format.clone()),
            )
        })?;
        Ok(WebhookRecord {
            id: row.id,
            url: row.url,
            types,
            description: row.description,
            format,
            active: row.active,
            created_at: row.created_at,
            disabled_at: row.disabled_at,
            disabled_reason: row.disabled_reason,
        })
    }
}

/// A webhook to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub url: String,
    pub types: Vec<String>,
    pub description: String,
    pub format: WebhookFormat,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// What [`WriteTx::create_webhook`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateWebhook {
    Created(Box<WebhookRecord>),
    /// As many webhooks as allowed exist already.
    TooMany,
}

/// What [`WriteTx::enable_webhook`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnableWebhook {
    /// It was disabled and delivers again from now on; `skipped` missed events were listed.
    Enabled(Box<WebhookRecord>),
    /// It was active: nothing changed.
    AlreadyActive(Box<WebhookRecord>),
    /// It changed since [`ReadConn::webhook_missed`] looked: look again.
    Changed,
    NotFound,
}

/// What a disabled webhook missed: read before enabling it, so that the scan of the events does
/// not hold up the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub webhook_id: i64,
    /// The cursor when it was read: enabling checks it is still there.
    pub cursor: i64,
    /// The highest event id then: the cursor after enabling.
    pub last_event: i64,
    /// The missed events to list as skipped, oldest first: what its backlog held, then its
    /// types' events after the cursor, at most the limit asked for.
    pub events: Vec<i64>,
}

/// An event a webhook owes after a failure, or holds behind one of the same subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedEvent {
    pub event_id: i64,
    pub subject: String,
    /// When the event happened.
    pub event_at: DateTime<Utc>,
    /// Attempts made; 0 for an event held behind an earlier one of its subject.
    pub attempts: i32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// When it may be tried again (for a held event: once it is first in its subject).
    pub next_attempt_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhook_backlog, check_for_backend(crate::connection::MultiBackend))]
struct OwedRow {
    event_id: i64,
    subject: String,
    #[diesel(deserialize_as = Micros)]
    event_at: DateTime<Utc>,
    attempts: i32,
    #[diesel(deserialize_as = OptionalMicros)]
    first_attempt_at: Option<DateTime<Utc>>,
    #[diesel(deserialize_as = Micros)]
    next_attempt_at: DateTime<Utc>,
}

impl From<OwedRow> for OwedEvent {
    fn from(row: OwedRow) -> Self {
        OwedEvent {
            event_id: row.event_id,
            subject: row.subject,
            event_at: row.event_at,
            attempts: row.attempts,
            first_attempt_at: row.first_attempt_at,
            next_attempt_at: row.next_attempt_at,
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOutcome {
    /// A 2xx answer in time.
    Delivered,
    /// Another status, or no answer: retried later.
    Failed,
    /// Never attempted: missed while the webhook was disabled, or gone from the database before
    /// its turn came.
    Skipped,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Failed => "failed",
            DeliveryOutcome::Skipped => "skipped",
        }
    }

    fn parse(text: &str) -> Option<DeliveryOutcome> {
        [
            DeliveryOutcome::Delivered,
            DeliveryOutcome::Failed,
            DeliveryOutcome::Skipped,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == text)
    }
}

/// An attempt to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub event_id: i64,
    /// 1 for the first attempt; 0 for a skipped event.
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub outcome: DeliveryOutcome,
    pub http_status: Option<u16>,
    /// A coarse class (`timeout`, `refused`, ...), never the receiver's text.
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
}

/// An attempt as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: i64,
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub outcome: DeliveryOutcome,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(crate::connection::MultiBackend))]
struct DeliveryRow {
    id: i64,
    webhook_id: i64,
    event_id: i64,
    attempt: i32,
    #[diesel(deserialize_as = Micros)]
    at: DateTime<Utc>,
    outcome: String,
    http_status: Option<i32>,
    error: Option<String>,
    duration_ms: Option<i64>,
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> Result<Self, StoreError> {
        let outcome = DeliveryOutcome::parse(&row.outcome).ok_or_else(|| {
            unreadable(
                "webhook_deliveries.outcome",
                crate::UnknownValue::new("delivery outcome", row.outcome.clone()),
            )
        })?;
        Ok(DeliveryRecord {
            id: row.id,
            webhook_id: row.webhook_id,
            event_id: row.event_id,
            attempt: row.attempt,
            at: row.at,
            outcome,
            http_status: row.http_status.and_then(|s| u16::try_from(s).ok()),
            error: row.error,
            duration_ms: row.duration_ms,
        })
    }
}

/// What one round of the delivery worker did, recorded in one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookProgress {
    pub webhook_id: i64,
    /// Every event of its types up to here was handled (delivered, owed, or skipped).
    pub cursor: i64,
    pub deliveries: Vec<NewDelivery>,
    /// Backlog entries new or changed (attempts, times).
    pub owed: Vec<OwedEvent>,
    /// Backlog entries done with (delivered or skipped).
    pub settled: Vec<i64>,
    pub now: DateTime<Utc>,
    /// The webhook is disabled when the oldest event it owes was first attempted before this.
    pub give_up_before: DateTime<Utc>,
    /// Delete the attempts beyond the newest [`DELIVERIES_KEPT`] (done every hundred rows or
    /// so rather than at each write: it costs the writer a scan of them).
    pub trim: bool,
}

/// What [`WriteTx::record_webhook_progress`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressOutcome {
    Recorded,
    /// Recorded, and the webhook was disabled (it failed too long): `webhook.disabled` was
    /// emitted.
    Disabled(Box<WebhookRecord>),
    /// Nothing recorded: this instance no longer delivers the webhook (deleted, disabled, or
    /// claimed by another instance after this one's lease passed).
    NotOwned,
}

/// Which webhooks a listing returns: newest first, keyset pages by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFilter {
    pub before: Option<i64>,
    pub limit: i64,
}

fn load(conn: &mut DbConnection, id: i64) -> Result<Option<WebhookRecord>, StoreError> {
    webhooks::table
        .find(id)
        .select(WebhookRow::as_select())
        .first(conn)
        .optional()?
        .map(WebhookRecord::try_from)
        .transpose()
}

fn last_event_id(conn: &mut DbConnection) -> Result<i64, StoreError> {
    let last: Option<i64> = crate::schema::events::table
        .select(diesel::dsl::max(crate::schema::events::id))
        .first(conn)?;
    Ok(last.unwrap_or(0))
}

/// Keeps the newest [`DELIVERIES_KEPT`] attempts of the webhook.
fn trim_deliveries(conn: &mut DbConnection, webhook_id: i64) -> Result<(), StoreError> {
    let oldest_kept: Option<i64> = webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .order(webhook_deliveries::id.desc())
        .offset(DELIVERIES_KEPT - 1)
        .select(webhook_deliveries::id)
        .first(conn)
        .optional()?;
    if let Some(oldest_kept) = oldest_kept {
        diesel::delete(
            webhook_deliveries::table
                .filter(webhook_deliveries::webhook_id.eq(webhook_id))
                .filter(webhook_deliveries::id.lt(oldest_kept)),
        )
        .execute(conn)?;
    }
    Ok(())
}

fn insert_deliveries(
    conn: &mut DbConnection,
    webhook_id: i64,
    deliveries: &[NewDelivery],
    trim: bool,
) -> Result<(), StoreError> {
    for chunk in deliveries.chunks(CHUNK) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|delivery| {
                (
                    webhook_deliveries::webhook_id.eq(webhook_id),
                    webhook_deliveries::event_id.eq(delivery.event_id),
                    webhook_deliveries::attempt.eq(delivery.attempt),
                    webhook_deliveries::at.eq(to_micros(delivery.at)),
                    webhook_deliveries::outcome.eq(delivery.outcome.as_str()),
                    webhook_deliveries::http_status.eq(delivery.http_status.map(i32::from)),
                    webhook_deliveries::error.eq(delivery.error.as_deref()),
                    webhook_deliveries::duration_ms.eq(delivery.duration_ms),
                )
            })
            .collect();
        let insert = diesel::insert_into(webhook_deliveries::table).values(rows);
        per_backend!(&mut *conn, |c| insert.execute(c))?;
    }
    if trim && !deliveries.is_empty() {
        trim_deliveries(conn, webhook_id)?;
    }
    Ok(())
}

impl WriteTx<'_> {
    /// Creates a webhook that delivers the events committed after it, unless `max` exist.
    pub fn create_webhook(
        &mut self,
        new: &NewWebhook,
        max: i64,
    ) -> Result<CreateWebhook, StoreError> {
        let count: i64 = webhooks::table.count().get_result(self.conn)?;
        if count >= max {
            return Ok(CreateWebhook::TooMany);
        }
        let types =
            serde_json::to_string(&new.types).map_err(|e| unreadable("webhooks.types", e))?;
        // Events committed before this write are not its business; the ones of this batch and
        // later are (their ids are drawn at the batch's end, above this).
        let cursor = last_event_id(self.conn)?;
        let id: i64 = diesel::insert_into(webhooks::table)
            .values((
                webhooks::url.eq(&new.url),
                webhooks::types.eq(types),
                webhooks::description.eq(&new.description),
                webhooks::format.eq(new.format.as_str()),
                webhooks::secret.eq(&new.secret),
                webhooks::active.eq(true),
                webhooks::created_at.eq(to_micros(new.created_at)),
                webhooks::cursor.eq(cursor),
            ))
            .returning(webhooks::id)
            .get_result(self.conn)?;
        let record = load(self.conn, id)?.ok_or_else(|| StoreError::vanished("webhook", id))?;
        Ok(CreateWebhook::Created(Box::new(record)))
    }

    /// Deletes the webhook with its backlog and attempts. False when there was none.
    pub fn delete_webhook(&mut self, id: i64) -> Result<bool, StoreError> {
        diesel::delete(webhook_backlog::table.filter(webhook_backlog::webhook_id.eq(id)))
            .execute(self.conn)?;
        diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(id)))
            .execute(self.conn)?;
        Ok(diesel::delete(webhooks::table.find(id)).execute(self.conn)? > 0)
    }

    /// Enables a disabled webhook: it delivers the events committed from now on, and the ones it
    /// missed (`missed`, read just before) are listed as skipped. The cursor is checked to be
    /// where `missed` found it.
    pub fn enable_webhook(
        &mut self,
        missed: &Missed,
        now: DateTime<Utc>,
    ) -> Result<EnableWebhook, StoreError> {
        let id = missed.webhook_id;
        let Some(record) = load(self.conn, id)? else {
            return Ok(EnableWebhook::NotFound);
        };
        if record.active {
            return Ok(EnableWebhook::AlreadyActive(Box::new(record)));
        }
        // Events committed between the read and now: the ones of the webhook's types among them
        // are skipped unlisted rather than scanned for here, inside the writer.
        let cursor = last_event_id(self.conn)?.max(missed.last_event);
        let updated = diesel::update(
            webhooks::table
                .find(id)
                .filter(webhooks::active.eq(false))
                .filter(webhooks::cursor.eq(missed.cursor)),
        )
        .set((
            webhooks::active.eq(true),
            webhooks::disabled_at.eq(None::<i64>),
            webhooks::disabled_reason.eq(None::<String>),
            webhooks::cursor.eq(cursor),
            webhooks::owner.eq(None::<String>),
            webhooks::lease_until.eq(0_i64),
        ))
        .execute(self.conn)?;
        if updated == 0 {
            return Ok(EnableWebhook::Changed);
        }
        diesel::delete(webhook_backlog::table.filter(webhook_backlog::webhook_id.eq(id)))
            .execute(self.conn)?;
        let skipped: Vec<NewDelivery> = missed
            .events
            .iter()
            .map(|&event_id| NewDelivery {
                event_id,
                attempt: 0,
                at: now,
                outcome: DeliveryOutcome::Skipped,
                http_status: None,
                error: None,
                duration_ms: None,
            })
            .collect();
        insert_deliveries(self.conn, id, &skipped, true)?;
        let record = load(self.conn, id)?.ok_or_else(|| StoreError::vanished("webhook", id))?;
        Ok(EnableWebhook::Enabled(Box::new(record)))
    }

    /// Takes on the active webhooks that no live instance delivers, and renews this instance's
    /// hold on its own until `lease_until`. Returns every webhook this instance now delivers.
    pub fn claim_webhooks(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<ClaimedWebhook>, StoreError> {
        let live: Vec<String> = instances::table.select(instances::id).load(self.conn)?;
        // Re-checked on each row under its lock (PostgreSQL re-reads an updated row's
        // condition), so two instances never both take one.
        diesel::update(
            webhooks::table.filter(webhooks::active.eq(true)).filter(
                webhooks::owner
                    .is_null()
                    .or(webhooks::owner.eq(self.instance))
                    .or(webhooks::lease_until.lt(to_micros(now)))
                    .or(webhooks::owner.ne_all(&live)),
            ),
        )
        .set((
            webhooks::owner.eq(self.instance),
            webhooks::lease_until.eq(to_micros(lease_until)),
        ))
        .execute(self.conn)?;
        let rows: Vec<(WebhookRow, String)> = webhooks::table
            .filter(webhooks::active.eq(true))
            .filter(webhooks::owner.eq(self.instance))
            .order(webhooks::id.asc())
            .select((WebhookRow::as_select(), webhooks::secret))
            .load(self.conn)?;
        rows.into_iter()
            .map(|(row, secret)| {
                Ok(ClaimedWebhook {
                    record: WebhookRecord::try_from(row)?,
                    secret,
                })
            })
            .collect()
    }

    /// At an orderly stop: this instance's webhooks are free for the others at once.
    pub fn release_webhooks(&mut self) -> Result<usize, StoreError> {
        Ok(
            diesel::update(webhooks::table.filter(webhooks::owner.eq(self.instance)))
                .set((
                    webhooks::owner.eq(None::<String>),
                    webhooks::lease_until.eq(0_i64),
                ))
                .execute(self.conn)?,
        )
    }

    /// Records a round of deliveries: the attempts, the backlog's changes and the new cursor,
    /// all or nothing; then disables the webhook if the oldest event it owes was first tried
    /// before `give_up_before`, emitting `webhook.disabled`. Only while this instance delivers
    /// the webhook.
    pub fn record_webhook_progress(
        &mut self,
        progress: &WebhookProgress,
    ) -> Result<ProgressOutcome, StoreError> {
        let id = progress.webhook_id;
        let owned = crate::connection::locked!(
            &mut *self.conn,
            webhooks::table
                .find(id)
                .filter(webhooks::active.eq(true))
                .filter(webhooks::owner.eq(self.instance))
                .select(webhooks::id),
            |q, c| q.first::<i64>(c).optional()
        )?;
        if owned.is_none() {
            return Ok(ProgressOutcome::NotOwned);
        }
        insert_deliveries(self.conn, id, &progress.deliveries, progress.trim)?;
        let gone: Vec<i64> = progress
            .settled
            .iter()
            .copied()
            .chain(progress.owed.iter().map(|owed| owed.event_id))
            .collect();
        for chunk in gone.chunks(CHUNK) {
            diesel::delete(
                webhook_backlog::table
                    .filter(webhook_backlog::webhook_id.eq(id))
                    .filter(webhook_backlog::event_id.eq_any(chunk)),
            )
            .execute(self.conn)?;
        }
        for chunk in progress.owed.chunks(CHUNK) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|owed| {
                    (
                        webhook_backlog::webhook_id.eq(id),
                        webhook_backlog::event_id.eq(owed.event_id),
                        webhook_backlog::subject.eq(&owed.subject),
                        webhook_backlog::event_at.eq(to_micros(owed.event_at)),
                        webhook_backlog::attempts.eq(owed.attempts),
                        webhook_backlog::first_attempt_at.eq(owed.first_attempt_at.map(to_micros)),
                        webhook_backlog::next_attempt_at.eq(to_micros(owed.next_attempt_at)),
                    )
                })
                .collect();
            let insert = diesel::insert_into(webhook_backlog::table).values(rows);
            per_backend!(&mut *self.conn, |c| insert.execute(c))?;
        }
        diesel::update(
            webhooks::table
                .find(id)
                .filter(webhooks::cursor.lt(progress.cursor)),
        )
        .set(webhooks::cursor.eq(progress.cursor))
        .execute(self.conn)?;
        let first_attempt: Option<Option<i64>> = webhook_backlog::table
            .filter(webhook_backlog::webhook_id.eq(id))
            .select(diesel::dsl::min(webhook_backlog::first_attempt_at))
            .first(self.conn)
            .optional()?;
        let Some(first_attempt) = first_attempt.flatten().map(from_micros) else {
            return Ok(ProgressOutcome::Recorded);
        };
        if first_attempt >= progress.give_up_before {
            return Ok(ProgressOutcome::Recorded);
        }
        let reason = format!(
            "disabled: the oldest event it owes was first attempted at {} and every attempt since \
             has failed",
            first_attempt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let record = self.disable_webhook(id, progress.now, &reason)?;
        Ok(ProgressOutcome::Disabled(Box::new(record)))
    }

    /// Disables the webhook (it keeps its cursor and backlog: enabling lists them as skipped)
    /// and emits `webhook.disabled` with its state after.
    fn disable_webhook(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<WebhookRecord, StoreError> {
        diesel::update(webhooks::table.find(id))
            .set((
                webhooks::active.eq(false),
                webhooks::disabled_at.eq(Some(to_micros(now))),
                webhooks::disabled_reason.eq(Some(reason)),
                webhooks::owner.eq(None::<String>),
                webhooks::lease_until.eq(0_i64),
            ))
            .execute(self.conn)?;
        let record = load(self.conn, id)?.ok_or_else(|| StoreError::vanished("webhook", id))?;
        #[derive(Serialize)]
        struct Snapshot<'a> {
            webhook: &'a WebhookRecord,
        }
        self.subject_event(
            EventType::WebhookDisabled,
            format!("webhooks/{id}"),
            now,
            Some(reason),
            &Snapshot { webhook: &record },
        )?;
        Ok(record)
    }
}

impl ReadConn<'_> {
    pub fn webhook(&mut self, id: i64) -> Result<Option<WebhookRecord>, StoreError> {
        load(self.conn, id)
    }

    pub fn webhooks(&mut self, filter: &WebhookFilter) -> Result<Vec<WebhookRecord>, StoreError> {
        let mut query = webhooks::table.into_boxed();
        if let Some(before) = filter.before {
            query = query.filter(webhooks::id.lt(before));
        }
        query
            .order(webhooks::id.desc())
            .limit(filter.limit)
            .select(WebhookRow::as_select())
            .load(self.conn)?
            .into_iter()
            .map(WebhookRecord::try_from)
            .collect()
    }

    /// The webhook's attempts, newest first, before the attempt `before`.
    pub fn webhook_deliveries(
        &mut self,
        webhook_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut query = webhook_deliveries::table
            .filter(webhook_deliveries::webhook_id.eq(webhook_id))
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(webhook_deliveries::id.lt(before));
        }
        query
            .order(webhook_deliveries::id.desc())
            .limit(limit)
            .select(DeliveryRow::as_select())
            .load(self.conn)?
            .into_iter()
            .map(DeliveryRecord::try_from)
            .collect()
    }

    /// Where the webhook's deliveries stand: its cursor and backlog (oldest first). None when
    /// it does not exist.
    pub fn webhook_state(
        &mut self,
        webhook_id: i64,
    ) -> Result<Option<(i64, Vec<OwedEvent>)>, StoreError> {
        let Some(cursor) = webhooks::table
            .find(webhook_id)
            .select(webhooks::cursor)
            .first::<i64>(self.conn)
            .optional()?
        else {
            return Ok(None);
        };
        let owed = webhook_backlog::table
            .filter(webhook_backlog::webhook_id.eq(webhook_id))
            .order(webhook_backlog::event_id.asc())
            .select(OwedRow::as_select())
            .load(self.conn)?
            .into_iter()
            .map(OwedEvent::from)
            .collect();
        Ok(Some((cursor, owed)))
    }

    /// What the webhook missed while disabled, to enable it: at most `limit` events, its
    /// backlog's first. None when it does not exist.
    pub fn webhook_missed(
        &mut self,
        webhook_id: i64,
        limit: i64,
    ) -> Result<Option<Missed>, StoreError> {
        let Some(record) = load(self.conn, webhook_id)? else {
            return Ok(None);
        };
        let Some((cursor, owed)) = self.webhook_state(webhook_id)? else {
            return Ok(None);
        };
        let last_event = self.last_event_id()?;
        let mut events: Vec<i64> = owed.iter().map(|owed| owed.event_id).collect();
        if record.active {
            events.clear();
        } else {
            let room = limit - i64::try_from(events.len()).unwrap_or(i64::MAX);
            if room > 0 {
                let later = self.events(&EventFilter {
                    after: cursor,
                    types: record.patterns(),
                    subjects: Vec::new(),
                    limit: room,
                })?;
                events.extend(
                    later
                        .iter()
                        .map(|event| event.id)
                        .filter(|id| *id <= last_event),
                );
            }
        }
        events.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(Some(Missed {
            webhook_id,
            cursor,
            last_event,
            events,
        }))
    }
}
