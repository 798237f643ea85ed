#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crontab semantics on top of the `cron` crate: field forms, day-of-week numbering, the
//! day-of-month OR day-of-week rule, validation, and `start`/`end` bounds.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc, Weekday};
use rpa_scheduler::{CronError, CronSchedule, Tz};

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn parse(expression: &str) -> Result<CronSchedule, CronError> {
    CronSchedule::parse(expression, Tz::UTC, None, None, TimeDelta::seconds(1))
}

fn weekdays(expression: &str) -> Vec<Weekday> {
    // Three weeks of daily-or-rarer runs from a Saturday: the set of weekdays seen, in order
    // of first appearance from Sunday.
    let runs = parse(expression)
        .unwrap()
        .upcoming(utc("2026-07-11T12:00:00Z"), 21);
    let mut seen: Vec<Weekday> = Vec::new();
    for run in runs {
        if !seen.contains(&run.weekday()) {
            seen.push(run.weekday());
        }
    }
    seen.sort_by_key(Weekday::num_days_from_sunday);
    seen
}

#[test]
fn day_of_week_numbering_is_crontab_in_both_forms() {
    use Weekday::*;
    let cases: [(&str, &[Weekday]); 14] = [
        ("0 9 * * 1-5", &[Mon, Tue, Wed, Thu, Fri]),
        ("0 0 9 * * 1-5", &[Mon, Tue, Wed, Thu, Fri]),
        ("0 9 * * 0", &[Sun]),
        ("0 9 * * 7", &[Sun]),
        ("0 0 9 * * 7", &[Sun]),
        ("0 9 * * 5-7", &[Sun, Fri, Sat]),
        ("0 9 * * */2", &[Sun, Tue, Thu, Sat]),
        ("0 9 * * MON-FRI", &[Mon, Tue, Wed, Thu, Fri]),
        ("0 9 * * sun", &[Sun]),
        ("0 9 * * Sat,sun", &[Sun, Sat]),
        ("0 9 ? * 1", &[Mon]),
        ("0 0 9 ? * 6", &[Sat]),
        ("0 9 * * 1-5/2", &[Mon, Wed, Fri]),
        ("@weekly", &[Sun]),
    ];
    for (expression, expected) in cases {
        assert_eq!(weekdays(expression), expected, "`{expression}`");
    }
}

#[test]
fn translated_expressions_use_day_names() {
    let cases: [(&str, &[&str]); 5] = [
        ("0 9 * * 1-5", &["0 0 9 * * MON,TUE,WED,THU,FRI"]),
        ("0 9 * * 0", &["0 0 9 * * SUN"]),
        ("0 9 * * 5-7", &["0 0 9 * * SUN,FRI,SAT"]),
        ("*/5 * * * * *", &["*/5 * * * * *"]),
        ("0 0 1 * MON", &["0 0 0 1 * *", "0 0 0 * * MON"]),
    ];
    for (expression, expected) in cases {
        let schedule = parse(expression).unwrap();
        assert_eq!(schedule.quartz_expressions(), expected, "`{expression}`");
        assert_eq!(schedule.expression(), expression);
    }
}

#[test]
fn day_of_month_or_day_of_week_when_both_are_restricted() {
    // Vixie cron: the 1st of the month OR any Monday (the `cron` crate alone would AND them).
    let runs = parse("0 0 1 * MON")
        .unwrap()
        .upcoming(utc("2026-06-01T00:00:00Z"), 6);
    assert_eq!(
        runs,
        [
            utc("2026-06-08T00:00:00Z"),
            utc("2026-06-15T00:00:00Z"),
            utc("2026-06-22T00:00:00Z"),
            utc("2026-06-29T00:00:00Z"),
            utc("2026-07-01T00:00:00Z"),
            utc("2026-07-06T00:00:00Z"),
        ]
    );
    // A day matching both (Monday 1 June 2026) runs once.
    let runs = parse("0 0 1 * MON")
        .unwrap()
        .upcoming(utc("2026-05-31T00:00:00Z"), 2);
    assert_eq!(
        runs,
        [utc("2026-06-01T00:00:00Z"), utc("2026-06-08T00:00:00Z")]
    );
    // With one day field unrestricted, the other alone decides.
    let first_only = parse("0 0 1 * *")
        .unwrap()
        .upcoming(utc("2026-06-01T00:00:00Z"), 2);
    assert_eq!(
        first_only,
        [utc("2026-07-01T00:00:00Z"), utc("2026-08-01T00:00:00Z")]
    );
}

#[test]
fn field_forms() {
    let quarter = parse("*/15 * * * *").unwrap();
    let runs = quarter.upcoming(utc("2026-07-10T10:01:00Z"), 3);
    assert_eq!(
        runs.iter().map(|r| r.minute()).collect::<Vec<_>>(),
        [15, 30, 45]
    );

    let odd = parse("1-10/2 9 * * *").unwrap();
    let runs = odd.upcoming(utc("2026-07-10T00:00:00Z"), 6);
    assert_eq!(
        runs.iter().map(|r| r.minute()).collect::<Vec<_>>(),
        [1, 3, 5, 7, 9, 1]
    );

    let named = parse("0 0 1 jan,JUL *").unwrap();
    assert_eq!(
        named.upcoming(utc("2026-02-01T00:00:00Z"), 2),
        [utc("2026-07-01T00:00:00Z"), utc("2027-01-01T00:00:00Z")]
    );

    let seconds = parse("*/20 * * * * *").unwrap();
    assert_eq!(
        seconds.upcoming(utc("2026-07-10T10:00:00Z"), 3),
        [
            utc("2026-07-10T10:00:20Z"),
            utc("2026-07-10T10:00:40Z"),
            utc("2026-07-10T10:01:00Z")
        ]
    );
}

#[test]
fn macros() {
    let cases = [
        ("@hourly", "2026-07-10T11:00:00Z"),
        ("@daily", "2026-07-11T00:00:00Z"),
        ("@midnight", "2026-07-11T00:00:00Z"),
        ("@weekly", "2026-07-12T00:00:00Z"),
        ("@monthly", "2026-08-01T00:00:00Z"),
        ("@yearly", "2027-01-01T00:00:00Z"),
        ("@annually", "2027-01-01T00:00:00Z"),
    ];
    for (expression, expected) in cases {
        assert_eq!(
            parse(expression)
                .unwrap()
                .next_after(utc("2026-07-10T10:30:00Z")),
            Some(utc(expected)),
            "`{expression}`"
        );
    }
}

#[test]
fn syntax_errors() {
    assert_eq!(
        parse("* * * *").unwrap_err(),
        CronError::WrongFieldCount { found: 4 }
    );
    assert_eq!(
        parse("0 0 12 * * ? 2030").unwrap_err(),
        CronError::WrongFieldCount { found: 7 }
    );
    for (expression, needle) in [
        ("0 0 L * *", "not supported"),
        ("0 0 LW * *", "not supported"),
        ("0 0 15W * *", "not supported"),
        ("0 0 * * 5L", "not supported"),
        ("0 0 * * FRI#2", "not supported"),
        ("0 0 * * 8", "day of week `8`"),
        ("0 25 * * *", "hour field `25`"),
        ("60 * * * *", "minute field `60`"),
        ("0 0 0 * * 9", "day of week `9`"),
        ("@reboot", "not a supported macro"),
        ("", "empty"),
    ] {
        match parse(expression) {
            Err(CronError::Syntax { reason }) => {
                assert!(reason.contains(needle), "`{expression}`: {reason}");
            }
            other => panic!("`{expression}` gave {other:?}"),
        }
    }
}

#[test]
fn never_fires() {
    for expression in [
        "0 0 30 2 *",
        "0 0 31 4 *",
        "0 0 31 2,4,6,9,11 *",
        "0 0 0 30 FEB ?",
    ] {
        assert_eq!(
            parse(expression).unwrap_err(),
            CronError::NeverFires,
            "`{expression}`"
        );
    }
    // 29 February is rare, not impossible.
    let leap = parse("0 0 29 2 *").unwrap();
    assert_eq!(
        leap.next_after(utc("2026-07-10T00:00:00Z")),
        Some(utc("2028-02-29T00:00:00Z"))
    );
    // An impossible day of month still fires through its day of week (OR rule).
    assert!(parse("0 0 30 2 MON").is_ok());
}

#[test]
fn minimum_interval() {
    let minute = TimeDelta::seconds(60);
    assert!(CronSchedule::parse("* * * * * *", Tz::UTC, None, None, TimeDelta::seconds(1)).is_ok());
    assert_eq!(
        CronSchedule::parse("* * * * * *", Tz::UTC, None, None, minute).unwrap_err(),
        CronError::TooFrequent {
            interval: TimeDelta::seconds(1),
            min: minute
        }
    );
    assert!(CronSchedule::parse("* * * * *", Tz::UTC, None, None, minute).is_ok());
    // The smallest gap counts, not the average: 09:00 and 09:01 once a day.
    assert_eq!(
        CronSchedule::parse("0 0,1 9 * * *", Tz::UTC, None, None, TimeDelta::seconds(61))
            .unwrap_err(),
        CronError::TooFrequent {
            interval: minute,
            min: TimeDelta::seconds(61)
        }
    );
    let message = CronSchedule::parse("*/10 * * * * *", Tz::UTC, None, None, minute)
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "the cron expression fires every 10 s, more often than the minimum interval of 1 min"
    );
}

#[test]
fn bounds() {
    let start = utc("2026-08-01T09:00:00Z");
    let end = utc("2026-08-03T09:00:00Z");
    let bounded = CronSchedule::parse(
        "0 9 * * *",
        Tz::UTC,
        Some(start),
        Some(end),
        TimeDelta::seconds(1),
    )
    .unwrap();
    assert_eq!(bounded.start(), Some(start));
    assert_eq!(bounded.end(), Some(end));
    assert_eq!(bounded.zone(), Tz::UTC);
    // From the later of now and start; an occurrence exactly at start and at end counts.
    assert_eq!(
        bounded.upcoming(utc("2026-07-10T00:00:00Z"), 5),
        [start, utc("2026-08-02T09:00:00Z"), end]
    );
    assert_eq!(bounded.next_after(end), None);
    assert_eq!(
        bounded.upcoming(utc("2026-08-02T00:00:00Z"), 5),
        [utc("2026-08-02T09:00:00Z"), end]
    );

    let backwards = CronSchedule::parse(
        "0 9 * * *",
        Tz::UTC,
        Some(end),
        Some(start),
        TimeDelta::seconds(1),
    )
    .unwrap_err();
    assert!(
        matches!(&backwards, CronError::BadBounds { reason } if reason.contains("before start"))
    );

    let now = utc("2026-09-01T00:00:00Z");
    let past_end = CronSchedule::parse_at(
        "0 9 * * *",
        Tz::UTC,
        None,
        Some(end),
        TimeDelta::seconds(1),
        now,
    )
    .unwrap_err();
    assert!(matches!(&past_end, CronError::BadBounds { reason } if reason.contains("in the past")));

    // A window with no occurrence in it: 09:00 is outside 10:00..11:00.
    let empty = CronSchedule::parse(
        "0 9 * * *",
        Tz::UTC,
        Some(utc("2026-08-01T10:00:00Z")),
        Some(utc("2026-08-01T11:00:00Z")),
        TimeDelta::seconds(1),
    )
    .unwrap_err();
    assert!(matches!(&empty, CronError::BadBounds { reason } if reason.contains("no occurrence")));

    // parse_at checks the window from now: an end that is still ahead but after the last
    // occurrence is refused too.
    let too_late = CronSchedule::parse_at(
        "0 9 1 1 *",
        Tz::UTC,
        None,
        Some(utc("2026-12-31T00:00:00Z")),
        TimeDelta::seconds(1),
        utc("2026-07-10T00:00:00Z"),
    );
    assert!(matches!(too_late, Err(CronError::BadBounds { .. })));
}

#[test]
fn zone_is_the_wall_clock() {
    let berlin = CronSchedule::parse(
        "0 9 * * *",
        Tz::Europe__Berlin,
        None,
        None,
        TimeDelta::seconds(1),
    )
    .unwrap();
    assert_eq!(
        berlin.upcoming(utc("2026-07-10T00:00:00Z"), 1),
        [utc("2026-07-10T07:00:00Z")]
    );
    assert_eq!(
        berlin.upcoming(utc("2026-12-10T00:00:00Z"), 1),
        [utc("2026-12-10T08:00:00Z")]
    );
    assert_eq!(
        berlin
            .next_after(utc("2026-12-10T08:00:00Z"))
            .map(|t| t.hour()),
        Some(8)
    );
}
