//! Stored times are microseconds since the Unix epoch, UTC.
//!
//! Records keep their times as `DateTime<Utc>`; a field reads its column through [`Micros`] or
//! [`OptionalMicros`] (`#[diesel(deserialize_as = ...)]`), so the struct is the row.

use chrono::{DateTime, Utc};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, Queryable};
use diesel::sql_types::{BigInt, Nullable};

pub(crate) fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    // Every stored value came from `to_micros`, which covers years far beyond any schedule; the
    // fallback only guards against a hand-edited database.
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::UNIX_EPOCH)
}

/// A `BigInt` column of microseconds, read as a time. `pub` because the public records' derived
/// `Queryable` impls name it (as their `Row`); nothing outside the crate can name it otherwise.
pub struct Micros(DateTime<Utc>);

impl<DB> Queryable<BigInt, DB> for Micros
where
    DB: Backend,
    i64: FromSql<BigInt, DB>,
{
    type Row = i64;

    fn build(micros: i64) -> deserialize::Result<Self> {
        Ok(Micros(from_micros(micros)))
    }
}

impl From<Micros> for DateTime<Utc> {
    fn from(at: Micros) -> Self {
        at.0
    }
}

/// A `Nullable<BigInt>` column of microseconds, read as a time if there is one. `pub` like
/// [`Micros`].
pub struct OptionalMicros(Option<DateTime<Utc>>);

impl<DB> Queryable<Nullable<BigInt>, DB> for OptionalMicros
where
    DB: Backend,
    Option<i64>: FromSql<Nullable<BigInt>, DB>,
{
    type Row = Option<i64>;

    fn build(micros: Option<i64>) -> deserialize::Result<Self> {
        Ok(OptionalMicros(micros.map(from_micros)))
    }
}

impl From<OptionalMicros> for Option<DateTime<Utc>> {
    fn from(at: OptionalMicros) -> Self {
        at.0
    }
}
