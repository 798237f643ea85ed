//! `POST /api/jobs` documents, and the instants they carry.

use chrono::{DateTime, SecondsFormat, Utc};
use hyper::body::Bytes;
use serde_json::{Map, Value, json};

/// A trigger document: `{"Package": {...}, "Robot": {...}, "Schedule": {...}}`.
///
/// ```
/// use rpa_testkit::{Trigger, utc};
/// let body = Trigger::new("pkg", "studio/pkg.std")
///     .robot("R", "001AFFDB45C2")
///     .at(utc("2026-07-15T09:00:00Z"))
///     .to_json();
/// assert_eq!(body["Schedule"]["at"], "2026-07-15T09:00:00.000Z");
/// ```
#[derive(Debug, Clone)]
pub struct Trigger {
    package: Map<String, Value>,
    robot_name: String,
    robot_address: String,
    /// Any free robot of this pool instead of `robot_address` (docs/POOLS.md).
    pool: Option<String>,
    /// `None`: due when the document is made.
    schedule: Option<Value>,
}

impl Trigger {
    /// A trigger for package `name` at `path`, due now; name its robot with
    /// [`Trigger::robot`].
    pub fn new(name: &str, path: &str) -> Trigger {
        let mut package = Map::new();
        package.insert("package_name".to_owned(), Value::from(name));
        package.insert("path".to_owned(), Value::from(path));
        Trigger {
            package,
            robot_name: String::new(),
            robot_address: String::new(),
            pool: None,
            schedule: None,
        }
    }

    pub fn robot(mut self, name: &str, address: &str) -> Trigger {
        name.clone_into(&mut self.robot_name);
        address.clone_into(&mut self.robot_address);
        self
    }

    /// For any free robot of `pool`, with an optional robot name (empty: none).
    pub fn pool(mut self, name: &str, pool: &str) -> Trigger {
        name.clone_into(&mut self.robot_name);
        self.robot_address.clear();
        self.pool = Some(pool.to_owned());
        self
    }

    /// A further key of the package, which the server delivers verbatim.
    pub fn package_field(mut self, key: &str, value: impl Into<Value>) -> Trigger {
        self.package.insert(key.to_owned(), value.into());
        self
    }

    /// The `Schedule` object as given (`at`, `cron`, `timezone`, ...).
    pub fn schedule(mut self, schedule: Value) -> Trigger {
        self.schedule = Some(schedule);
        self
    }

    /// Once, at `when` (RFC 3339 with milliseconds).
    pub fn at(self, when: DateTime<Utc>) -> Trigger {
        self.schedule(json!({"at": rfc3339_millis(when)}))
    }

    pub fn to_json(&self) -> Value {
        let schedule = match &self.schedule {
            Some(schedule) => schedule.clone(),
            None => json!({"at": rfc3339_millis(Utc::now())}),
        };
        let robot = match &self.pool {
            Some(pool) => json!({"robot_name": self.robot_name, "pool": pool}),
            None => json!({"robot_name": self.robot_name, "robot_address": self.robot_address}),
        };
        json!({"Package": self.package, "Robot": robot, "Schedule": schedule})
    }

    /// The document encoded, as a request body.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.to_json().to_string())
    }
}

/// An RFC 3339 instant, e.g. `utc("2026-07-15T09:00:00Z")`.
///
/// # Panics
/// When `text` is not one: it is meant for literals in tests.
pub fn utc(text: &str) -> DateTime<Utc> {
    text.parse()
        .unwrap_or_else(|error| panic!("{text:?} is not an RFC 3339 instant: {error}"))
}

/// RFC 3339 in UTC with milliseconds, as the API shows instants and `at` schedules take them.
pub fn rfc3339_millis(when: DateTime<Utc>) -> String {
    when.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 in UTC with microseconds, of µs since the epoch.
pub fn rfc3339_micros(epoch_us: i64) -> String {
    from_micros(epoch_us).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// µs since the epoch as an instant (the epoch itself when out of range).
pub fn from_micros(epoch_us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(epoch_us).unwrap_or_default()
}

/// The wall clock, µs since the epoch.
pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_key_order() {
        let body = Trigger::new("p", "a/b.std")
            .package_field("due_us", 42)
            .robot("R", "AC0000000005")
            .schedule(json!({"at": "2026-07-15T08:00:00.000000Z"}))
            .to_bytes();
        assert_eq!(
            body,
            r#"{"Package":{"package_name":"p","path":"a/b.std","due_us":42},"Robot":{"robot_name":"R","robot_address":"AC0000000005"},"Schedule":{"at":"2026-07-15T08:00:00.000000Z"}}"#
        );
    }

    #[test]
    fn instants() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_784_102_400_123_456),
            "2026-07-15T08:00:00.123456Z"
        );
        assert_eq!(
            rfc3339_millis(from_micros(1_784_102_400_123_456)),
            "2026-07-15T08:00:00.123Z"
        );
        assert_eq!(
            utc("2026-07-15T10:00:00+02:00"),
            utc("2026-07-15T08:00:00Z")
        );
    }
}
