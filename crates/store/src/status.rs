//! A job's status and delivery phase, as SQL types: queries bind them and records read them
//! directly. Written once for every backend (generic over it), so they work through
//! [`DbConnection`](crate::connection::DbConnection)'s `MultiBackend` and through the backends'
//! own connections alike. A stored value this build does not know is a deserialization error,
//! which the store reports as [`StoreError::Corrupt`](crate::StoreError::Corrupt).

use std::borrow::Borrow;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Integer, Text};

use crate::error::UnknownValue;

/// Makes `$enum` a value of SQL type `$sql`, stored as what `$stored` gives (a `$value`) and
/// read back by finding that among `$enum::ALL`, on every backend that stores and reads `$value`
/// as `$sql`. `$stored` gives a `'static` reference: a bound value must outlive the statement,
/// and a constant costs no allocation.
macro_rules! stored_as {
    ($enum:ident as $sql:ty, $value:ty, by $stored:ident, $what:literal) => {
        impl<DB> ToSql<$sql, DB> for $enum
        where
            DB: Backend,
            $value: ToSql<$sql, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.$stored().to_sql(out)
            }
        }

        impl<DB> FromSql<$sql, DB> for $enum
        where
            DB: Backend,
            <$value as ToOwned>::Owned: FromSql<$sql, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                let value = <$value as ToOwned>::Owned::from_sql(bytes)?;
                $enum::ALL
                    .into_iter()
                    .find(|known| known.$stored() == Borrow::<$value>::borrow(&value))
                    .ok_or_else(|| UnknownValue::new($what, format!("{value:?}")).into())
            }
        }
    };
}

/// The statuses of http-api.md, spelt as the API shows them (and as they are stored, as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, FromSqlRow, AsExpression)]
#[diesel(sql_type = Text)]
pub enum JobStatus {
    Pending,
    Executed,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Executed,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "Pending",
            JobStatus::Executed => "Executed",
            JobStatus::Succeeded => "Succeeded",
            JobStatus::Failed => "Failed",
            JobStatus::Cancelled => "Cancelled",
        }
    }

    /// Accepts any capitalisation: the original frontend compared statuses case-insensitively.
    pub fn parse(text: &str) -> Option<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// Succeeded, Failed and Cancelled never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

// Exactly as `as_str` spells it: no case folding when read back, unlike `parse`.
stored_as!(JobStatus as Text, str, by as_str, "job status");

/// Where a job's current sending stands. Internal to delivery; the API shows only the status.
/// Stored as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow, AsExpression)]
#[diesel(sql_type = Integer)]
pub enum Delivery {
    /// Not being sent.
    Idle,
    /// Claimed for sending; not yet known to be written to the robot's socket.
    Claimed,
    /// Written to an extended robot, which has not acknowledged it yet.
    AwaitingAck,
    /// Written (and acknowledged, for an extended robot).
    Written,
}

impl Delivery {
    const ALL: [Delivery; 4] = [
        Delivery::Idle,
        Delivery::Claimed,
        Delivery::AwaitingAck,
        Delivery::Written,
    ];

    fn code(self) -> &'static i32 {
        match self {
            Delivery::Idle => &0,
            Delivery::Claimed => &1,
            Delivery::AwaitingAck => &2,
            Delivery::Written => &3,
        }
    }
}

stored_as!(Delivery as Integer, i32, by code, "delivery phase");

#[cfg(test)]
mod tests {
    use diesel::dsl::sql;
    use diesel::prelude::*;

    use super::*;
    use crate::connection::DbConnection;
    use crate::{Corruption, StoreError};

    fn connection() -> DbConnection {
        DbConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap())
    }

    #[test]
    fn statuses_and_phases_are_stored_as_text_and_codes() {
        let conn = &mut connection();
        for status in JobStatus::ALL {
            let stored: String = diesel::select(status.into_sql::<Text>().concat(""))
                .get_result(conn)
                .unwrap();
            assert_eq!(stored, status.as_str());
            let read: JobStatus = diesel::select(status.into_sql::<Text>())
                .get_result(conn)
                .unwrap();
            assert_eq!(read, status);
        }
        for (phase, code) in [
            (Delivery::Idle, 0),
            (Delivery::Claimed, 1),
            (Delivery::AwaitingAck, 2),
            (Delivery::Written, 3),
        ] {
            let stored: i32 = diesel::select(phase.into_sql::<Integer>() + 0)
                .get_result(conn)
                .unwrap();
            assert_eq!(stored, code);
            let read: Delivery = diesel::select(sql::<Integer>(&code.to_string()))
                .get_result(conn)
                .unwrap();
            assert_eq!(read, phase);
        }
    }

    #[test]
    fn an_unknown_stored_value_is_corrupt_data() {
        let conn = &mut connection();
        let status = diesel::select(sql::<Text>("'pending'")).get_result::<JobStatus>(conn);
        let phase = diesel::select(sql::<Integer>("7")).get_result::<Delivery>(conn);
        for (read, cause) in [
            (status.map(drop), r#"unknown job status "pending""#),
            (phase.map(drop), "unknown delivery phase 7"),
        ] {
            match read.map_err(StoreError::from) {
                Err(StoreError::Corrupt(Corruption::Unreadable { source, .. })) => {
                    assert_eq!(source.to_string(), cause);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
