//! Idempotency keys: a retried trigger gets what its first request created.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::connection::DbConnection;

use crate::jobs::{IdempotencyKey, load_job};
use crate::schedules::load_schedule;
use crate::schema::idempotency_keys;
use crate::time::to_micros;
use crate::{JobRecord, ScheduleRecord, StoreError, WriteTx};

/// What an earlier request with the same key created, as it is now, and the body of the
/// answer that request got (when it was recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    pub created: Created,
    pub response: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Job(Box<JobRecord>),
    Schedule(Box<ScheduleRecord>),
}

pub(crate) enum KeyCheck {
    /// Never seen: go ahead.
    New,
    /// Seen with the same request.
    Seen(Prior),
    /// Seen with a different request (or what it created is gone).
    Conflict,
}

pub(crate) fn check(conn: &mut DbConnection, key: &IdempotencyKey) -> Result<KeyCheck, StoreError> {
    type Seen = (String, Option<i64>, Option<i64>, Option<String>);
    let seen: Option<Seen> = idempotency_keys::table
        .find(&key.key)
        .select((
            idempotency_keys::request_hash,
            idempotency_keys::job_id,
            idempotency_keys::schedule_id,
            idempotency_keys::response,
        ))
        .first(conn)
        .optional()?;
    let Some((hash, job_id, schedule_id, response)) = seen else {
        return Ok(KeyCheck::New);
    };
    if hash != key.request_hash {
        return Ok(KeyCheck::Conflict);
    }
    let created = match (job_id, schedule_id) {
        (Some(id), _) => load_job(conn, id)?.map(|job| Created::Job(Box::new(job))),
        (None, Some(id)) => load_schedule(conn, id)?.map(|s| Created::Schedule(Box::new(s))),
        (None, None) => None,
    };
    Ok(match created {
        Some(created) => KeyCheck::Seen(Prior { created, response }),
        None => KeyCheck::Conflict,
    })
}

pub(crate) fn remember(
    conn: &mut DbConnection,
    key: &IdempotencyKey,
    job_id: Option<i64>,
    schedule_id: Option<i64>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::key.eq(&key.key),
            idempotency_keys::request_hash.eq(&key.request_hash),
            idempotency_keys::job_id.eq(job_id),
            idempotency_keys::schedule_id.eq(schedule_id),
            idempotency_keys::created_at.eq(to_micros(at)),
        ))
        .execute(conn)?;
    Ok(())
}

impl WriteTx<'_> {
    /// Records the body of the answer to the request that used `key` first.
    pub fn remember_response(&mut self, key: &str, response: &str) -> Result<(), StoreError> {
        diesel::update(idempotency_keys::table.find(key))
            .set(idempotency_keys::response.eq(Some(response)))
            .execute(self.conn)?;
        Ok(())
    }
}
