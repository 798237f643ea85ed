#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `Schedule` keys, forms and the `cron` form, as the HTTP contract defines them.

mod common;

use chrono::TimeDelta;
use common::{BERLIN, ctx, errors, one_error, parse_with, utc};
use rpa_scheduler::{ScheduleContext, ScheduleRequest};
use serde_json::json;

#[test]
fn keys_and_forms() {
    // A misspelt key is an error, not silently ignored.
    let typo = errors(
        json!({"date": "15-7", "time": "9:00", "timeZone": "UTC"}),
        "did you mean `timezone`",
    );
    assert_eq!(typo, [("Schedule.timeZone".to_owned(), false)]);
    errors(
        json!({"date": "15-7", "time": "9:00", "repeat": "yes"}),
        "date, time, at, cron, timezone, start, end",
    );
    // Missing halves.
    assert_eq!(
        errors(json!({"date": "15-7"}), "required"),
        [("Schedule.time".to_owned(), true)]
    );
    assert_eq!(
        errors(json!({"time": "9:00"}), "required"),
        [("Schedule.date".to_owned(), true)]
    );
    assert_eq!(
        errors(json!({"date": "", "time": "9:00"}), "required"),
        [("Schedule.date".to_owned(), true)]
    );
    // Nothing at all.
    assert_eq!(
        errors(json!({}), "no schedule given"),
        [("Schedule".to_owned(), true)]
    );
    assert_eq!(
        errors(
            json!({"timezone": "UTC", "date": null, "at": "  "}),
            "no schedule given"
        ),
        [("Schedule".to_owned(), true)]
    );
    assert_eq!(
        errors(json!({"Cron": "0 9 * * *"}), "did you mean `cron`"),
        [
            ("Schedule.Cron".to_owned(), false),
            ("Schedule".to_owned(), true)
        ]
    );
    // Two forms: the second is at fault.
    one_error(
        json!({"date": "15-7", "time": "9:00", "at": "2026-07-15T09:00:00Z"}),
        "Schedule.at",
        "exactly one of",
    );
    one_error(
        json!({"at": "2026-07-15T09:00:00Z", "cron": "0 9 * * *"}),
        "Schedule.cron",
        "exactly one of",
    );
    // Values must be strings.
    one_error(
        json!({"date": 15, "time": "9:00"}),
        "Schedule.date",
        "must be a string",
    );
    one_error(
        json!({"cron": ["0 9 * * *"]}),
        "Schedule.cron",
        "must be a string",
    );
    // Unknown zone.
    one_error(
        json!({"date": "15-7", "time": "9:00", "timezone": "Mars/Olympus"}),
        "Schedule.timezone",
        "not a known time zone",
    );
    // start/end only with cron.
    one_error(
        json!({"date": "15-7", "time": "9:00", "start": "2026-07-15T09:00:00Z"}),
        "Schedule.start",
        "only applies to a `cron` schedule",
    );
}

#[test]
fn cron_form() {
    let value = json!({
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "start": "2027-03-27T00:00:00Z",
        "end": "2027-12-31T00:00:00Z"
    });
    let Ok(ScheduleRequest::Recurring(schedule)) = parse_with(value, &ctx()) else {
        panic!("cron must parse");
    };
    assert_eq!(schedule.expression(), "30 2 * * *");
    assert_eq!(schedule.zone(), BERLIN);
    assert_eq!(
        schedule.upcoming(ctx().now, 3),
        [
            utc("2027-03-27T01:30:00Z"),
            utc("2027-03-28T01:00:00Z"),
            utc("2027-03-29T00:30:00Z")
        ]
    );
    let Ok(ScheduleRequest::Recurring(default_zone)) =
        parse_with(json!({"cron": "0 9 * * 1-5"}), &ctx())
    else {
        panic!("cron must parse");
    };
    assert_eq!(default_zone.zone(), BERLIN);
    assert_eq!(default_zone.start(), None);

    one_error(
        json!({"cron": "0 0 L * *"}),
        "Schedule.cron",
        "not supported",
    );
    one_error(
        json!({"cron": "0 0 30 2 *"}),
        "Schedule.cron",
        "never fires",
    );
    one_error(json!({"cron": "* * *"}), "Schedule.cron", "5 fields");
    one_error(
        json!({"cron": "0 9 * * *", "start": "2026-08-01T00:00:00Z", "end": "2026-07-20T00:00:00Z"}),
        "Schedule.end",
        "before start",
    );
    one_error(
        json!({"cron": "0 9 * * *", "end": "2026-07-01T00:00:00Z"}),
        "Schedule.end",
        "in the past",
    );
    one_error(
        json!({"cron": "0 9 * * *", "start": "tomorrow"}),
        "Schedule.start",
        "RFC 3339",
    );
    let strict = ScheduleContext {
        min_interval: TimeDelta::seconds(60),
        ..ctx()
    };
    let too_often = parse_with(json!({"cron": "* * * * * *"}), &strict).unwrap_err();
    assert_eq!(too_often.len(), 1);
    assert_eq!(too_often[0].field, "Schedule.cron");
    assert!(too_often[0].message.contains("more often"), "{too_often:?}");
}
