//! Wall-clock time in microseconds since the epoch, the unit the server stores and the checker
//! compares in.

use chrono::{DateTime, Utc};

/// The harness's wall clock, µs since the epoch.
pub use rpa_testkit::now_us;

/// RFC 3339 in UTC with milliseconds, the form the server's `at` schedules take.
pub fn rfc3339(us: i64) -> String {
    rpa_testkit::rfc3339_millis(rpa_testkit::trigger::from_micros(us))
}

/// Parses an RFC 3339 time as the API shows it.
pub fn parse_us(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc).timestamp_micros())
}

/// Rounds down to a whole millisecond: the due moment sent in a trigger and the one written in
/// the package are then exactly the same instant.
pub fn floor_ms(us: i64) -> i64 {
    us - us.rem_euclid(1_000)
}

pub fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let us = floor_ms(1_780_000_000_123_456);
        assert_eq!(us, 1_780_000_000_123_000);
        assert_eq!(parse_us(&rfc3339(us)), Some(us));
    }
}
