#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The misfire rule: one catch-up run per schedule, with the count of what was missed.

use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use rpa_scheduler::{CATCH_UP_COUNT_CAP, CatchUp, CronSchedule, Tz, catch_up};

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn schedule(expression: &str, zone: Tz) -> CronSchedule {
    CronSchedule::parse(expression, zone, None, None, TimeDelta::seconds(1)).unwrap()
}

#[test]
fn per_minute_after_ten_minutes_down() {
    let minutely = schedule("* * * * *", Tz::UTC);
    let result = catch_up(
        &minutely,
        utc("2026-07-10T09:50:00Z"),
        utc("2026-07-10T10:00:30Z"),
    );
    assert_eq!(
        result,
        CatchUp {
            missed: 10, // 09:51 .. 10:00
            missed_capped: false,
            latest_missed: Some(utc("2026-07-10T10:00:00Z")),
            next: Some(utc("2026-07-10T10:01:00Z")),
        }
    );
    // An occurrence exactly at `now` counts as missed; one exactly at `last_fire` does not.
    let on_the_minute = catch_up(
        &minutely,
        utc("2026-07-10T09:50:00Z"),
        utc("2026-07-10T10:00:00Z"),
    );
    assert_eq!(on_the_minute.missed, 10);
    assert_eq!(
        on_the_minute.latest_missed,
        Some(utc("2026-07-10T10:00:00Z"))
    );
    assert_eq!(on_the_minute.next, Some(utc("2026-07-10T10:01:00Z")));
}

#[test]
fn nothing_missed() {
    let minutely = schedule("* * * * *", Tz::UTC);
    let result = catch_up(
        &minutely,
        utc("2026-07-10T10:00:00Z"),
        utc("2026-07-10T10:00:59Z"),
    );
    assert_eq!(
        result,
        CatchUp {
            missed: 0,
            missed_capped: false,
            latest_missed: None,
            next: Some(utc("2026-07-10T10:01:00Z")),
        }
    );
    // A clock set back: nothing missed, and the occurrence that already ran is not repeated.
    let skewed = catch_up(
        &minutely,
        utc("2026-07-10T10:05:00Z"),
        utc("2026-07-10T10:00:30Z"),
    );
    assert_eq!(skewed.missed, 0);
    assert_eq!(skewed.latest_missed, None);
    assert_eq!(skewed.next, Some(utc("2026-07-10T10:06:00Z")));
}

#[test]
fn per_second_after_thirty_days_is_capped_and_cheap() {
    let every_second = schedule("* * * * * *", Tz::Europe__Berlin);
    let now = utc("2026-07-10T10:00:00.5Z");
    let started = Instant::now();
    let result = catch_up(&every_second, now - TimeDelta::days(30), now);
    let elapsed = started.elapsed();
    assert!(result.missed_capped);
    assert_eq!(result.missed, CATCH_UP_COUNT_CAP);
    assert_eq!(result.latest_missed, Some(utc("2026-07-10T10:00:00Z")));
    assert_eq!(result.next, Some(utc("2026-07-10T10:00:01Z")));
    assert!(elapsed.as_secs() < 5, "took {elapsed:?}");
}

#[test]
fn capped_through_a_repeated_hour() {
    // `now` is in the second pass of Berlin's repeated hour: everything up to 02:59:59 wall
    // time already ran at its first (CEST) instant.
    let every_second = schedule("* * * * * *", Tz::Europe__Berlin);
    let now = utc("2026-10-25T01:10:00Z");
    let result = catch_up(&every_second, utc("2026-10-20T00:00:00Z"), now);
    assert!(result.missed_capped);
    assert_eq!(result.latest_missed, Some(utc("2026-10-25T00:59:59Z")));
    assert_eq!(result.next, Some(utc("2026-10-25T02:00:00Z")));
}

#[test]
fn across_daylight_saving_each_run_counts_once() {
    let quarter = schedule("*/15 * * * *", Tz::Europe__Berlin);
    // 02:00, 02:15, 02:30, 02:45 CEST and 03:00 CET; the repeated hour adds nothing.
    let result = catch_up(
        &quarter,
        utc("2026-10-24T23:45:00Z"),
        utc("2026-10-25T02:00:00Z"),
    );
    assert_eq!(result.missed, 5);
    assert_eq!(result.latest_missed, Some(utc("2026-10-25T02:00:00Z")));
    assert_eq!(result.next, Some(utc("2026-10-25T02:15:00Z")));
    // Spring forward: the four gap times are one run at the jump.
    let result = catch_up(
        &quarter,
        utc("2026-03-29T00:45:00Z"),
        utc("2026-03-29T01:20:00Z"),
    );
    // 01:00Z (the jump, standing for 02:00..02:45 and 03:00), 01:15Z (03:15 CEST).
    assert_eq!(result.missed, 2);
    assert_eq!(result.latest_missed, Some(utc("2026-03-29T01:15:00Z")));
}

#[test]
fn bounds_limit_what_was_missed() {
    let start = utc("2026-07-01T00:00:00Z");
    let end = utc("2026-07-05T09:00:00Z");
    let daily = CronSchedule::parse(
        "0 9 * * *",
        Tz::UTC,
        Some(start),
        Some(end),
        TimeDelta::seconds(1),
    )
    .unwrap();
    let result = catch_up(
        &daily,
        utc("2026-06-01T00:00:00Z"),
        utc("2026-07-10T00:00:00Z"),
    );
    assert_eq!(
        result,
        CatchUp {
            missed: 5,
            missed_capped: false,
            latest_missed: Some(end),
            next: None,
        }
    );
    let every_second = CronSchedule::parse(
        "* * * * * *",
        Tz::UTC,
        None,
        Some(utc("2026-07-09T00:00:00Z")),
        TimeDelta::seconds(1),
    )
    .unwrap();
    let result = catch_up(
        &every_second,
        utc("2026-07-01T00:00:00Z"),
        utc("2026-07-10T00:00:00Z"),
    );
    assert!(result.missed_capped);
    assert_eq!(result.latest_missed, Some(utc("2026-07-09T00:00:00Z")));
    assert_eq!(result.next, None);
}
