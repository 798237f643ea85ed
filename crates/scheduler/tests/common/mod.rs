//! Helpers shared by the `parse_schedule` test files.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use rpa_scheduler::{
    FieldError, OnceSchedule, ScheduleContext, ScheduleRequest, Tz, parse_schedule,
};
use serde_json::{Map, Value};

pub(crate) const BERLIN: Tz = Tz::Europe__Berlin;

pub(crate) fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// Friday 10 July 2026, 12:00 in Berlin (CEST).
pub(crate) fn ctx() -> ScheduleContext {
    ScheduleContext::new(utc("2026-07-10T10:00:00Z"), BERLIN)
}

pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub(crate) fn parse_with(
    value: Value,
    ctx: &ScheduleContext,
) -> Result<ScheduleRequest, Vec<FieldError>> {
    parse_schedule(&object(value), ctx).map_err(|errors| {
        assert!(!errors.is_empty(), "Err must carry at least one error");
        errors.into_vec()
    })
}

pub(crate) fn once(value: Value) -> OnceSchedule {
    match parse_with(value.clone(), &ctx()) {
        Ok(ScheduleRequest::Once(once)) => once,
        other => panic!("{value} gave {other:?}"),
    }
}

pub(crate) fn run_at(value: Value) -> DateTime<Utc> {
    once(value).run_at
}

/// The errors as (field, missing) pairs, with each message checked for `needle`.
pub(crate) fn errors(value: Value, needle: &str) -> Vec<(String, bool)> {
    let found = parse_with(value.clone(), &ctx()).expect_err("must be refused");
    assert!(
        found.iter().any(|error| error.message.contains(needle)),
        "{value}: no message contains {needle:?}: {found:?}"
    );
    found
        .into_iter()
        .map(|error| {
            let missing = error.is_missing();
            (error.field, missing)
        })
        .collect()
}

pub(crate) fn one_error(value: Value, field: &str, needle: &str) {
    assert_eq!(errors(value, needle), [(field.to_owned(), false)]);
}
