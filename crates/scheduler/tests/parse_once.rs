#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One-shot `Schedule` objects (`date` + `time`, `at`), as the HTTP contract defines them.

mod common;

use common::{BERLIN, ctx, errors, once, one_error, parse_with, run_at, utc};
use rpa_scheduler::{ScheduleContext, ScheduleRequest, Tz};
use serde_json::json;

#[test]
fn date_and_time_forms() {
    let cases = [
        (
            json!({"date": "15-7", "time": "9:00:00"}),
            "2026-07-15T07:00:00Z",
        ),
        (
            json!({"date": "15-7", "time": "9:00"}),
            "2026-07-15T07:00:00Z",
        ),
        (
            json!({"date": "5-8", "time": "9:5"}),
            "2026-08-05T07:05:00Z",
        ),
        (
            json!({"date": "15-7-2026", "time": "09:00:00"}),
            "2026-07-15T07:00:00Z",
        ),
        (
            json!({"date": "2026-07-15", "time": "9:00"}),
            "2026-07-15T07:00:00Z",
        ),
        (
            json!({"date": "2026-8-5", "time": "9:00"}),
            "2026-08-05T07:00:00Z",
        ),
        (
            json!({"date": " 15-7 ", "time": " 9:00 "}),
            "2026-07-15T07:00:00Z",
        ),
        // Winter dates take the winter offset.
        (
            json!({"date": "15-12-2026", "time": "9:00"}),
            "2026-12-15T08:00:00Z",
        ),
        (
            json!({"date": "15-12", "time": "9:00", "timezone": "America/New_York"}),
            "2026-12-15T14:00:00Z",
        ),
        (
            json!({"date": "15-7", "time": "9:00", "timezone": "UTC"}),
            "2026-07-15T09:00:00Z",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(run_at(value.clone()), utc(expected), "{value}");
    }
    let ny = once(json!({"date": "15-7", "time": "9:00", "timezone": "america/new_york"}));
    assert_eq!(ny.zone, Tz::America__New_York);
    assert_eq!(ny.run_at, utc("2026-07-15T13:00:00Z"));
    assert!(!ny.clamped_to_now);
    assert_eq!(once(json!({"date": "15-7", "time": "9:00"})).zone, BERLIN);
    assert_eq!(
        run_at(json!({"date": "2026-7-15", "time": "9:5:7"})),
        utc("2026-07-15T07:05:07Z")
    );
}

#[test]
fn yearless_dates_take_their_next_occurrence() {
    // Already passed this year: next year (and its winter offset).
    assert_eq!(
        run_at(json!({"date": "1-1", "time": "9:00"})),
        utc("2027-01-01T08:00:00Z")
    );
    // Today, still ahead.
    assert_eq!(
        run_at(json!({"date": "10-7", "time": "12:00:01"})),
        utc("2026-07-10T10:00:01Z")
    );
    // 29 February without a year: the next leap year.
    assert_eq!(
        run_at(json!({"date": "29-2", "time": "10:00"})),
        utc("2028-02-29T09:00:00Z")
    );
    // The zone decides what "this year" is: at 16:00 UTC on 31 December it is already
    // 1 January in Tokyo, so 31-12 09:00 Tokyo is next year's.
    let new_year = ScheduleContext::new(utc("2026-12-31T16:00:00Z"), BERLIN);
    let Ok(ScheduleRequest::Once(tokyo)) = parse_with(
        json!({"date": "31-12", "time": "9:00", "timezone": "Asia/Tokyo"}),
        &new_year,
    ) else {
        panic!("Tokyo date must parse");
    };
    assert_eq!(tokyo.run_at, utc("2027-12-31T00:00:00Z"));
    // Just after New Year, last year's 31 December within the tolerance runs now.
    let just_after = ScheduleContext::new(utc("2026-12-31T23:00:20Z"), BERLIN);
    let Ok(ScheduleRequest::Once(late)) =
        parse_with(json!({"date": "31-12", "time": "23:59:50"}), &just_after)
    else {
        panic!("31-12 must parse");
    };
    assert_eq!(late.run_at, just_after.now);
    assert!(late.clamped_to_now);
}

#[test]
fn the_sixty_second_rule() {
    // now = 12:00:00 CEST. Exactly 60 s in the past runs now; 61 s is refused (or, without a
    // year, means next year).
    let clamped = once(json!({"date": "10-7-2026", "time": "11:59:00"}));
    assert_eq!(clamped.run_at, ctx().now);
    assert!(clamped.clamped_to_now);
    one_error(
        json!({"date": "10-7-2026", "time": "11:58:59"}),
        "Schedule.date",
        "is in the past (more than 60 s before now)",
    );
    let yearless = once(json!({"date": "10-7", "time": "11:59:30"}));
    assert!(yearless.clamped_to_now);
    assert_eq!(yearless.run_at, ctx().now);
    assert_eq!(
        run_at(json!({"date": "10-7", "time": "11:58:59"})),
        utc("2027-07-10T09:58:59Z")
    );
    // `at` follows the same rule.
    let at = once(json!({"at": "2026-07-10T09:59:00Z"}));
    assert_eq!(at.run_at, ctx().now);
    assert!(at.clamped_to_now);
    one_error(
        json!({"at": "2026-07-10T09:58:59Z"}),
        "Schedule.at",
        "is in the past (more than 60 s before now)",
    );
    // Exactly now is not clamped.
    let exact = once(json!({"at": "2026-07-10T12:00:00+02:00"}));
    assert_eq!(exact.run_at, ctx().now);
    assert!(!exact.clamped_to_now);
}

#[test]
fn daylight_saving_for_one_shot_times() {
    let cases = [
        // Gaps run at the jump.
        (
            json!({"date": "28-3-2027", "time": "2:30"}),
            "2027-03-28T01:00:00Z",
        ),
        (
            json!({"date": "2027-03-28", "time": "2:00:00"}),
            "2027-03-28T01:00:00Z",
        ),
        (
            json!({"date": "14-3-2027", "time": "2:30", "timezone": "America/New_York"}),
            "2027-03-14T07:00:00Z",
        ),
        // Repeated hours run at the first instant.
        (
            json!({"date": "25-10", "time": "2:30"}),
            "2026-10-25T00:30:00Z",
        ),
        (
            json!({"date": "31-10-2027", "time": "2:30"}),
            "2027-10-31T00:30:00Z",
        ),
        (
            json!({"date": "1-11", "time": "1:30", "timezone": "America/New_York"}),
            "2026-11-01T05:30:00Z",
        ),
        (
            json!({"date": "7-11-2027", "time": "1:30", "timezone": "America/New_York"}),
            "2027-11-07T05:30:00Z",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(run_at(value.clone()), utc(expected), "{value}");
    }
}

#[test]
fn at_form() {
    assert_eq!(
        run_at(json!({"at": "2026-07-15T09:00:00+02:00"})),
        utc("2026-07-15T07:00:00Z")
    );
    // The zone is recorded; the offset decides the instant.
    let tokyo = once(json!({"at": "2026-07-15T09:00:00Z", "timezone": "Asia/Tokyo"}));
    assert_eq!(tokyo.run_at, utc("2026-07-15T09:00:00Z"));
    assert_eq!(tokyo.zone, Tz::Asia__Tokyo);
    one_error(
        json!({"at": "2026-07-15T09:00:00"}),
        "Schedule.at",
        "no UTC offset",
    );
    one_error(
        json!({"at": "15-7 9:00"}),
        "Schedule.at",
        "not an RFC 3339 timestamp",
    );
}

#[test]
fn impossible_dates_and_times() {
    for (value, field, needle) in [
        (
            json!({"date": "31-2", "time": "9:00"}),
            "Schedule.date",
            "31 February does not exist",
        ),
        (
            json!({"date": "31-4", "time": "9:00"}),
            "Schedule.date",
            "31 April does not exist",
        ),
        (
            json!({"date": "29-2-2027", "time": "9:00"}),
            "Schedule.date",
            "29 February 2027 does not exist",
        ),
        (
            json!({"date": "1-13", "time": "9:00"}),
            "Schedule.date",
            "month 13 does not exist",
        ),
        (
            json!({"date": "0-7", "time": "9:00"}),
            "Schedule.date",
            "day 0 does not exist",
        ),
        (
            json!({"date": "15/7", "time": "9:00"}),
            "Schedule.date",
            "is not a date",
        ),
        (
            json!({"date": "15-7-26", "time": "9:00"}),
            "Schedule.date",
            "four digits",
        ),
        (
            json!({"date": "15-7", "time": "25:00"}),
            "Schedule.time",
            "hour 25 does not exist",
        ),
        (
            json!({"date": "15-7", "time": "24:00"}),
            "Schedule.time",
            "hour 24 does not exist",
        ),
        (
            json!({"date": "15-7", "time": "9:00:60"}),
            "Schedule.time",
            "second 60",
        ),
        (
            json!({"date": "15-7", "time": "9"}),
            "Schedule.time",
            "is not a time",
        ),
    ] {
        one_error(value, field, needle);
    }
    // Both wrong: both reported.
    let both = errors(json!({"date": "31-2", "time": "25:00"}), "31 February");
    assert_eq!(
        both,
        [
            ("Schedule.date".to_owned(), false),
            ("Schedule.time".to_owned(), false)
        ]
    );
}
