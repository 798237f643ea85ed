//! Stored times are microseconds since the Unix epoch, UTC.

use chrono::{DateTime, Utc};

pub(crate) fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    // Every stored value came from `to_micros`, which covers years far beyond any schedule; the
    // fallback only guards against a hand-edited database.
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::UNIX_EPOCH)
}
