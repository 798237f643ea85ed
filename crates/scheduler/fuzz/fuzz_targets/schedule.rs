//! Fuzz target `schedule`: the `Schedule` object of a trigger and cron expressions.
//!
//! One input is used two ways:
//! 1. parsed as JSON; when it is an object it goes to `parse_schedule`;
//! 2. as a raw string: to `CronSchedule::parse` (zone Europe/Berlin, no bounds, minimum
//!    interval 1 s, as the server's default) and, when that succeeds, again with a 60 s
//!    minimum interval (the frequency check); and as the value of each key of an otherwise
//!    valid `Schedule` (`at`, `date`, `time`, `timezone`, `cron`, `start`, `end`).
//!
//! Everything runs against a fixed `now` (2026-11-26T12:00:00Z) so that runs reproduce.
//!
//! Properties (beyond "no panic"):
//! - a one-shot schedule runs at or after `now` (the 60 s rule clamps to `now`);
//! - a cron schedule's `upcoming(now, 5)` is strictly increasing, after `now`, within the
//!   schedule's `start`/`end`, and begins with `next_after(now)`; `previous_at_or_before(now)`
//!   is not after `now` (nor before `start`);
//! - errors name a `Schedule.*` field and carry a message.
//!
//! A slow expression is a finding: libFuzzer's `-timeout` reports any input that takes longer
//! than the limit (fuzz.sh uses 10 s) as a crash, with the input saved.

#![no_main]

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use libfuzzer_sys::fuzz_target;
use rpa_scheduler::{CronSchedule, ScheduleContext, ScheduleRequest, parse_schedule};
use serde_json::{Map, Value, json};

const ZONE: Tz = chrono_tz::Europe::Berlin;

fn now() -> DateTime<Utc> {
    // 2026-11-26T12:00:00Z
    DateTime::from_timestamp(1_795_694_400, 0).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = ScheduleContext::new(now(), ZONE);
    if let Ok(Value::Object(schedule)) = serde_json::from_str::<Value>(text) {
        check_schedule(&schedule, &ctx);
    }
    check_cron(text);
    for value in [
        json!({"at": text}),
        json!({"date": text, "time": "9:00:00"}),
        json!({"date": "15-7", "time": text}),
        json!({"date": "29-3-2027", "time": "2:30", "timezone": text}),
        json!({"cron": text, "timezone": "Europe/Berlin"}),
        json!({"cron": "30 2 * * *", "start": text}),
        json!({"cron": "30 2 * * *", "end": text}),
    ] {
        if let Value::Object(schedule) = value {
            check_schedule(&schedule, &ctx);
        }
    }
});

fn check_schedule(schedule: &Map<String, Value>, ctx: &ScheduleContext) {
    match parse_schedule(schedule, ctx) {
        Ok(ScheduleRequest::Once(once)) => {
            assert!(
                once.run_at >= ctx.now,
                "one-shot schedule {schedule:?} runs in the past: {once:?}"
            );
            assert!(!once.clamped_to_now || once.run_at == ctx.now, "{once:?}");
        }
        Ok(ScheduleRequest::Recurring(cron)) => check_occurrences(&cron),
        Err(errors) => {
            assert!(errors.iter().next().is_some(), "rejected without an error");
            for error in errors.iter() {
                assert!(
                    error.field == "Schedule" || error.field.starts_with("Schedule."),
                    "{error:?}"
                );
                assert!(!error.message.is_empty());
            }
        }
    }
}

fn check_cron(expression: &str) {
    let Ok(cron) = CronSchedule::parse(expression, ZONE, None, None, TimeDelta::seconds(1)) else {
        return;
    };
    check_occurrences(&cron);
    // The frequency check only runs for a minimum interval above 1 s.
    let _ = CronSchedule::parse(expression, ZONE, None, None, TimeDelta::seconds(60));
}

fn check_occurrences(cron: &CronSchedule) {
    let now = now();
    let next = cron.next_after(now);
    let upcoming = cron.upcoming(now, 5);
    assert_eq!(upcoming.first().copied(), next, "{cron:?}");
    for pair in upcoming.windows(2) {
        assert!(
            pair[0] < pair[1],
            "occurrences not increasing: {upcoming:?} for {cron:?}"
        );
    }
    for instant in &upcoming {
        assert!(
            *instant > now,
            "occurrence {instant} not after now for {cron:?}"
        );
        assert!(
            cron.start().is_none_or(|start| *instant >= start),
            "{cron:?}"
        );
        assert!(cron.end().is_none_or(|end| *instant <= end), "{cron:?}");
    }
    if let Some(previous) = cron.previous_at_or_before(now) {
        assert!(
            previous <= now,
            "previous {previous} after now for {cron:?}"
        );
        assert!(
            cron.start().is_none_or(|start| previous >= start),
            "{cron:?}"
        );
    }
}
