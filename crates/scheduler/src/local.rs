//! Time zones and the one daylight-saving rule every schedule form shares.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};
use rpa_validation::FieldError;

/// Reads an IANA zone name (`"Europe/Berlin"`, `"UTC"`). The exact spelling is tried first;
/// a name that differs only in ASCII case (`"europe/berlin"`) resolves to the same zone.
/// Surrounding whitespace is ignored. Errors are reported on `Schedule.timezone`.
pub fn parse_zone(name: &str) -> Result<Tz, FieldError> {
    const FIELD: &str = "Schedule.timezone";
    let name = name.trim();
    if name.is_empty() {
        return Err(FieldError::missing(FIELD, "the time zone name is empty"));
    }
    if let Ok(zone) = name.parse::<Tz>() {
        return Ok(zone);
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .copied()
        .find(|zone| zone.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            FieldError::invalid(
                FIELD,
                format!(
                    "`{name}` is not a known time zone: use an IANA name such as Europe/Berlin \
                     or UTC"
                ),
            )
        })
}

/// Maps a wall-clock time of `zone` to an instant.
///
/// - a time that exists once maps to that instant;
/// - a time that exists twice (clocks set back) maps to the **earlier** instant;
/// - a time that does not exist (clocks set forward) maps to the instant the clocks jump,
///   the first valid moment after it: 02:30 on 28 March 2027 in Europe/Berlin is
///   2027-03-28T01:00:00Z (03:00 CEST).
///
/// The mapping never goes backwards: a later wall time never gives an earlier instant.
pub fn resolve_local(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(instant) => instant.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => gap_end(zone, local),
    }
}

/// The instant the clocks jump over the gap that contains `local`.
fn gap_end(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    if let Some(end) = GapInfo::new(&local, &zone).and_then(|gap| gap.end) {
        return end.with_timezone(&Utc);
    }
    // Only reachable past the end of the tz data: read the wall time with the offset that
    // holds at the same reading in UTC, which is after the jump.
    let offset = zone
        .offset_from_utc_datetime(&local)
        .fix()
        .local_minus_utc();
    let naive = local - TimeDelta::seconds(i64::from(offset));
    Utc.from_utc_datetime(&naive)
}

/// The wall-clock reading of `instant` in `zone`.
pub(crate) fn wall_time(zone: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&zone).naive_local()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, s))
            .unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn zones_by_exact_and_case_insensitive_name() {
        assert_eq!(parse_zone("Europe/Berlin").unwrap(), Tz::Europe__Berlin);
        assert_eq!(parse_zone(" europe/berlin ").unwrap(), Tz::Europe__Berlin);
        assert_eq!(parse_zone("UTC").unwrap(), Tz::UTC);
        assert_eq!(
            parse_zone("AMERICA/NEW_YORK").unwrap(),
            Tz::America__New_York
        );
        let error = parse_zone("Europe/Berln").unwrap_err();
        assert_eq!(error.field, "Schedule.timezone");
        assert!(error.message.contains("Europe/Berln"));
        assert!(parse_zone("").unwrap_err().is_missing());
        assert!(parse_zone("CEST").is_err());
    }

    #[test]
    fn resolve_local_table() {
        let berlin = Tz::Europe__Berlin;
        let new_york = Tz::America__New_York;
        let cases = [
            // ordinary times
            (berlin, local(2026, 7, 15, 9, 0, 0), "2026-07-15T07:00:00Z"),
            (berlin, local(2026, 1, 15, 9, 0, 0), "2026-01-15T08:00:00Z"),
            // spring forward: the gap maps to the jump instant
            (berlin, local(2026, 3, 29, 2, 0, 0), "2026-03-29T01:00:00Z"),
            (
                berlin,
                local(2026, 3, 29, 2, 59, 59),
                "2026-03-29T01:00:00Z",
            ),
            (berlin, local(2026, 3, 29, 3, 0, 0), "2026-03-29T01:00:00Z"),
            (
                berlin,
                local(2026, 3, 29, 1, 59, 59),
                "2026-03-29T00:59:59Z",
            ),
            (berlin, local(2027, 3, 28, 2, 30, 0), "2027-03-28T01:00:00Z"),
            (
                new_york,
                local(2026, 3, 8, 2, 30, 0),
                "2026-03-08T07:00:00Z",
            ),
            (
                new_york,
                local(2027, 3, 14, 2, 0, 0),
                "2027-03-14T07:00:00Z",
            ),
            // fall back: the repeated hour maps to its earlier instant
            (berlin, local(2026, 10, 25, 2, 0, 0), "2026-10-25T00:00:00Z"),
            (
                berlin,
                local(2026, 10, 25, 2, 30, 0),
                "2026-10-25T00:30:00Z",
            ),
            (berlin, local(2026, 10, 25, 3, 0, 0), "2026-10-25T02:00:00Z"),
            (
                berlin,
                local(2027, 10, 31, 2, 30, 0),
                "2027-10-31T00:30:00Z",
            ),
            (
                new_york,
                local(2026, 11, 1, 1, 30, 0),
                "2026-11-01T05:30:00Z",
            ),
            (
                new_york,
                local(2026, 11, 1, 2, 0, 0),
                "2026-11-01T07:00:00Z",
            ),
            (
                new_york,
                local(2027, 11, 7, 1, 0, 0),
                "2027-11-07T05:00:00Z",
            ),
        ];
        for (zone, wall, expected) in cases {
            assert_eq!(
                resolve_local(zone, wall),
                utc(expected),
                "{zone} {wall} should be {expected}"
            );
        }
    }

    #[test]
    fn gap_resolution_keeps_sub_second_walls_in_the_gap() {
        let wall = local(2026, 3, 29, 2, 15, 0) + TimeDelta::milliseconds(500);
        assert_eq!(
            resolve_local(Tz::Europe__Berlin, wall),
            utc("2026-03-29T01:00:00Z")
        );
    }
}
