//! Idempotency keys: a retried trigger gets what its first request created.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::jobs::{IdempotencyKey, load_job};
use crate::schedules::load_schedule;
use crate::schema::idempotency_keys;
use crate::time::to_micros;
use crate::{JobRecord, ScheduleRecord, StoreError};

/// What an earlier request with the same key created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
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

pub(crate) fn check(
    conn: &mut SqliteConnection,
    key: &IdempotencyKey,
) -> Result<KeyCheck, StoreError> {
    let seen: Option<(String, Option<i64>, Option<i64>)> = idempotency_keys::table
        .find(&key.key)
        .select((
            idempotency_keys::request_hash,
            idempotency_keys::job_id,
            idempotency_keys::schedule_id,
        ))
        .first(conn)
        .optional()?;
    let Some((hash, job_id, schedule_id)) = seen else {
        return Ok(KeyCheck::New);
    };
    if hash != key.request_hash {
        return Ok(KeyCheck::Conflict);
    }
    let prior = match (job_id, schedule_id) {
        (Some(id), _) => load_job(conn, id)?.map(|job| Prior::Job(Box::new(job))),
        (None, Some(id)) => load_schedule(conn, id)?.map(|s| Prior::Schedule(Box::new(s))),
        (None, None) => None,
    };
    Ok(prior.map_or(KeyCheck::Conflict, KeyCheck::Seen))
}

pub(crate) fn remember(
    conn: &mut SqliteConnection,
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
