//! One-shot schedules: `date` + `time` on a zone's wall clock, or an RFC 3339 `at`.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;

use crate::local::resolve_local;
use crate::request::ScheduleContext;

/// A validated one-shot schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceSchedule {
    /// When the job runs.
    pub run_at: DateTime<Utc>,
    /// The zone the schedule was written in (recorded even when `at` carried its own offset).
    pub zone: Tz,
    /// True when the moment was in the past by at most the tolerance (60 s), so `run_at` is
    /// the `now` of the request.
    pub clamped_to_now: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn month_name(month: u32) -> &'static str {
    let index = usize::try_from(month).unwrap_or(0).wrapping_sub(1);
    MONTH_NAMES.get(index).copied().unwrap_or("(no such month)")
}

/// A calendar date as written; `year` is `None` for the yearless `D-M` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateParts {
    day: u32,
    month: u32,
    year: Option<i32>,
}

/// Reads `D-M`, `D-M-YYYY` or `YYYY-MM-DD` (parts may be unpadded) and checks that the day
/// exists. The error is one sentence for `Schedule.date`.
pub(crate) fn parse_date(text: &str) -> Result<DateParts, String> {
    let text = text.trim();
    let usage = || {
        format!(
            "`{text}` is not a date: use D-M (15-7), D-M-YYYY (15-7-2026) or YYYY-MM-DD \
             (2026-07-15)"
        )
    };
    let parts: Vec<&str> = text.split('-').collect();
    let (day, month, year) = match parts.as_slice() {
        [day, month] => (
            number(day, 2).ok_or_else(usage)?,
            number(month, 2).ok_or_else(usage)?,
            None,
        ),
        [year, month, day] if year.len() == 4 => (
            number(day, 2).ok_or_else(usage)?,
            number(month, 2).ok_or_else(usage)?,
            Some(year),
        ),
        [day, month, year] if year.len() == 4 => (
            number(day, 2).ok_or_else(usage)?,
            number(month, 2).ok_or_else(usage)?,
            Some(year),
        ),
        [_, _, year] if year.len() < 4 => {
            return Err(format!("{} (years have four digits)", usage()));
        }
        _ => return Err(usage()),
    };
    let year = match year {
        Some(year) => Some(number(year, 4).ok_or_else(usage)? as i32),
        None => None,
    };
    check_date_exists(day, month, year)?;
    Ok(DateParts { day, month, year })
}

/// 1 to `max_digits` ASCII digits.
fn number(text: &str, max_digits: usize) -> Option<u32> {
    let digits =
        !text.is_empty() && text.len() <= max_digits && text.chars().all(|c| c.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

fn check_date_exists(day: u32, month: u32, year: Option<i32>) -> Result<(), String> {
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} does not exist (months are 1 to 12)"));
    }
    if day == 0 {
        return Err("day 0 does not exist (days start at 1)".to_owned());
    }
    if day > 31 {
        return Err(format!(
            "day {day} does not exist (no month has more than 31 days)"
        ));
    }
    let month_name = month_name(month);
    match year {
        Some(year) => {
            if NaiveDate::from_ymd_opt(year, month, day).is_some() {
                return Ok(());
            }
            if month == 2 && day == 29 {
                Err(format!(
                    "29 February {year} does not exist ({year} is not a leap year)"
                ))
            } else {
                Err(format!(
                    "{day} {month_name} {year} does not exist ({month_name} has {} days)",
                    days_in_month(year, month)
                ))
            }
        }
        None => {
            // 2000 is a leap year: a yearless 29 February exists (in leap years).
            if NaiveDate::from_ymd_opt(2000, month, day).is_some() {
                return Ok(());
            }
            let most = if month == 2 {
                "at most 29".to_owned()
            } else {
                days_in_month(2000, month).to_string()
            };
            Err(format!(
                "{day} {month_name} does not exist ({month_name} has {most} days)"
            ))
        }
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    (28..=31)
        .rev()
        .find(|day| NaiveDate::from_ymd_opt(year, month, *day).is_some())
        .unwrap_or(28)
}

/// Reads `H:M:S` or `H:M` (parts may be unpadded). No leap second, no `24:00`.
pub(crate) fn parse_time(text: &str) -> Result<NaiveTime, String> {
    let text = text.trim();
    let usage = || format!("`{text}` is not a time: use H:M:S or H:M (9:30:00, 9:30)");
    let parts: Vec<&str> = text.split(':').collect();
    let (hour, minute, second) = match parts.as_slice() {
        [hour, minute] => (hour, minute, "0"),
        [hour, minute, second] => (hour, minute, *second),
        _ => return Err(usage()),
    };
    let hour = number(hour, 2).ok_or_else(usage)?;
    let minute = number(minute, 2).ok_or_else(usage)?;
    let second = number(second, 2).ok_or_else(usage)?;
    if hour > 23 {
        return Err(format!("hour {hour} does not exist (hours are 0 to 23)"));
    }
    if minute > 59 {
        return Err(format!(
            "minute {minute} does not exist (minutes are 0 to 59)"
        ));
    }
    if second > 59 {
        return Err(format!(
            "second {second} is not accepted (seconds are 0 to 59; leap seconds are not \
             supported)"
        ));
    }
    NaiveTime::from_hms_opt(hour, minute, second).ok_or_else(usage)
}

/// Reads an RFC 3339 timestamp with its offset (`Z` or `+02:00`). The error is one sentence.
pub(crate) fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    match DateTime::parse_from_rfc3339(text) {
        Ok(instant) if instant.nanosecond() >= 1_000_000_000 => {
            Err(format!("`{text}` is a leap second, which is not supported"))
        }
        Ok(instant) => Ok(instant.with_timezone(&Utc)),
        Err(_) if is_naive_date_time(text) => Err(format!(
            "`{text}` has no UTC offset: add `Z` or an offset such as `+02:00`"
        )),
        Err(error) => Err(format!(
            "`{text}` is not an RFC 3339 timestamp such as 2026-07-15T09:00:00+02:00 ({error})"
        )),
    }
}

fn is_naive_date_time(text: &str) -> bool {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .any(|format| NaiveDateTime::parse_from_str(text, format).is_ok())
}

/// Applies the past-tolerance rule to a moment: in the future -> itself; in the past by at
/// most the tolerance -> `now`, clamped; further in the past -> `None`.
pub(crate) fn not_in_past(
    moment: DateTime<Utc>,
    ctx: &ScheduleContext,
) -> Option<(DateTime<Utc>, bool)> {
    if moment >= ctx.now {
        Some((moment, false))
    } else if moment >= ctx.now - ctx.past_tolerance {
        Some((ctx.now, true))
    } else {
        None
    }
}

pub(crate) fn past_message(what: &str, ctx: &ScheduleContext) -> String {
    format!(
        "{what} is in the past (more than {} s before now)",
        ctx.past_tolerance.num_seconds()
    )
}

/// Resolves `date` + `time` in `zone`. A yearless date is its next occurrence: the first
/// year whose moment is not more than the tolerance in the past.
pub(crate) fn schedule_date_time(
    date: DateParts,
    time: NaiveTime,
    zone: Tz,
    ctx: &ScheduleContext,
) -> Result<OnceSchedule, String> {
    let at = |year: i32| {
        NaiveDate::from_ymd_opt(year, date.month, date.day)
            .map(|day| resolve_local(zone, day.and_time(time)))
    };
    let accept = |(run_at, clamped_to_now)| OnceSchedule {
        run_at,
        zone,
        clamped_to_now,
    };
    let month_name = month_name(date.month);
    if let Some(year) = date.year {
        let moment =
            at(year).ok_or_else(|| format!("{} {month_name} {year} does not exist", date.day))?;
        return not_in_past(moment, ctx).map(accept).ok_or_else(|| {
            past_message(
                &format!(
                    "{} {month_name} {year} {} ({zone})",
                    date.day,
                    time.format("%H:%M:%S")
                ),
                ctx,
            )
        });
    }
    // Start a year early: just after New Year, last year's 31 December may still be within
    // the tolerance. Eight years ahead always reaches a 29 February (2096 -> 2104).
    let this_year = ctx.now.with_timezone(&zone).year();
    (this_year - 1..=this_year + 8)
        .filter_map(at)
        .find_map(|moment| not_in_past(moment, ctx))
        .map(accept)
        .ok_or_else(|| format!("{} {month_name} has no upcoming occurrence", date.day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_forms() {
        let cases = [
            ("15-7", (15, 7, None)),
            ("5-7", (5, 7, None)),
            (" 05-07 ", (5, 7, None)),
            ("15-7-2026", (15, 7, Some(2026))),
            ("2026-07-15", (15, 7, Some(2026))),
            ("2026-7-5", (5, 7, Some(2026))),
            ("29-2", (29, 2, None)),
            ("29-2-2028", (29, 2, Some(2028))),
        ];
        for (text, (day, month, year)) in cases {
            assert_eq!(
                parse_date(text).unwrap(),
                DateParts { day, month, year },
                "`{text}`"
            );
        }
    }

    #[test]
    fn impossible_and_malformed_dates() {
        let cases = [
            ("31-2", "31 February does not exist"),
            ("30-2", "30 February does not exist"),
            ("31-4", "31 April does not exist"),
            (
                "29-2-2027",
                "29 February 2027 does not exist (2027 is not a leap year)",
            ),
            ("2027-02-29", "29 February 2027 does not exist"),
            ("31-4-2026", "31 April 2026 does not exist"),
            ("1-13", "month 13 does not exist"),
            ("0-5", "day 0 does not exist"),
            ("32-1", "day 32 does not exist"),
            ("15/7", "is not a date"),
            ("15-7-26", "years have four digits"),
            ("15.7", "is not a date"),
            ("-7", "is not a date"),
            ("15-7-2026-1", "is not a date"),
            ("115-7", "is not a date"),
            ("+5-7", "is not a date"),
            ("", "is not a date"),
        ];
        for (text, expected) in cases {
            let error = parse_date(text).unwrap_err();
            assert!(error.contains(expected), "`{text}`: {error}");
        }
    }

    #[test]
    fn time_forms() {
        let cases = [
            ("9:00:00", (9, 0, 0)),
            ("9:0", (9, 0, 0)),
            ("09:05", (9, 5, 0)),
            ("23:59:59", (23, 59, 59)),
            ("0:0:0", (0, 0, 0)),
            (" 7:8:9 ", (7, 8, 9)),
        ];
        for (text, (h, m, s)) in cases {
            assert_eq!(
                parse_time(text).unwrap(),
                NaiveTime::from_hms_opt(h, m, s).unwrap(),
                "`{text}`"
            );
        }
        let errors = [
            ("25:00", "hour 25 does not exist"),
            ("24:00", "hour 24 does not exist"),
            ("12:60", "minute 60 does not exist"),
            ("12:00:60", "second 60 is not accepted"),
            ("9", "is not a time"),
            ("9:00:00:00", "is not a time"),
            ("9h30", "is not a time"),
            ("9:5a", "is not a time"),
            ("123:00", "is not a time"),
        ];
        for (text, expected) in errors {
            let error = parse_time(text).unwrap_err();
            assert!(error.contains(expected), "`{text}`: {error}");
        }
    }

    #[test]
    fn instants() {
        let at = parse_instant("2026-07-15T09:00:00+02:00").unwrap();
        assert_eq!(at, "2026-07-15T07:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(parse_instant("2026-07-15T07:00:00Z").is_ok());
        let naive = parse_instant("2026-07-15T09:00:00").unwrap_err();
        assert!(naive.contains("no UTC offset"), "{naive}");
        let leap = parse_instant("2026-12-31T23:59:60Z").unwrap_err();
        assert!(leap.contains("leap second"), "{leap}");
        let junk = parse_instant("tomorrow").unwrap_err();
        assert!(junk.contains("not an RFC 3339 timestamp"), "{junk}");
        assert!(parse_instant("2027-02-29T10:00:00Z").is_err());
    }
}
