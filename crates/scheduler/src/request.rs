//! The `Schedule` object of a job trigger, read into a one-shot or a recurring schedule.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rpa_validation::{FieldError, FieldErrors};
use serde_json::{Map, Value};

use crate::local::parse_zone;
use crate::once::{
    OnceSchedule, not_in_past, parse_date, parse_instant, parse_time, past_message,
    schedule_date_time,
};
use crate::recurring::CronSchedule;

/// Everything the schedule rules need from outside: the clock reading and the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleContext {
    /// The moment the request is handled.
    pub now: DateTime<Utc>,
    /// The zone of a schedule without `timezone`.
    pub default_zone: Tz,
    /// How far in the past a one-shot moment may be and still run (at `now`).
    pub past_tolerance: TimeDelta,
    /// The smallest spacing allowed between two occurrences of a cron expression.
    pub min_interval: TimeDelta,
}

impl ScheduleContext {
    /// A context with the contract's defaults: 60 s past tolerance, 1 s minimum interval.
    pub fn new(now: DateTime<Utc>, default_zone: Tz) -> Self {
        Self {
            now,
            default_zone,
            past_tolerance: TimeDelta::seconds(60),
            min_interval: TimeDelta::seconds(1),
        }
    }
}

/// A validated `Schedule`.
#[derive(Debug, Clone)]
pub enum ScheduleRequest {
    /// `date` + `time`, or `at`: one job.
    Once(OnceSchedule),
    /// `cron`: a job per occurrence.
    Recurring(CronSchedule),
}

const KEYS: [&str; 7] = ["date", "time", "at", "cron", "timezone", "start", "end"];

/// A key's value: absent (or `null`, or blank), a string, or present but not a string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot<'a> {
    Absent,
    Text(&'a str),
    NotText,
}

impl<'a> Slot<'a> {
    fn present(self) -> bool {
        self != Slot::Absent
    }

    fn text(self) -> Option<&'a str> {
        match self {
            Slot::Text(text) => Some(text),
            _ => None,
        }
    }
}

struct Slots<'a>([Slot<'a>; 7]);

impl<'a> Slots<'a> {
    fn get(&self, key: &str) -> Slot<'a> {
        KEYS.iter()
            .position(|known| *known == key)
            .map_or(Slot::Absent, |index| self.0[index])
    }
}

fn field(key: &str) -> String {
    format!("Schedule.{key}")
}

/// Reads a trigger's `Schedule` object (see the crate documentation for the forms).
///
/// Every problem found is reported, each on its field (`Schedule.date`, `Schedule.cron`, ...).
pub fn parse_schedule(
    schedule: &Map<String, Value>,
    ctx: &ScheduleContext,
) -> Result<ScheduleRequest, FieldErrors> {
    let mut errors = Vec::new();
    let slots = read_slots(schedule, &mut errors);

    let zone = match slots.get("timezone").text() {
        Some(name) => parse_zone(name).map_err(|error| errors.push(error)).ok(),
        None => Some(ctx.default_zone),
    };

    let date_form = slots.get("date").present() || slots.get("time").present();
    let forms = [
        (
            date_form,
            if slots.get("date").present() {
                "date"
            } else {
                "time"
            },
        ),
        (slots.get("at").present(), "at"),
        (slots.get("cron").present(), "cron"),
    ];
    let mut given = forms
        .iter()
        .filter(|(present, _)| *present)
        .map(|(_, key)| *key);
    let first = given.next();
    for extra in given {
        errors.push(FieldError::invalid(
            field(extra),
            format!(
                "`{extra}` cannot be combined with `{}`: give exactly one of date + time, at, \
                 or cron",
                first.unwrap_or_default()
            ),
        ));
    }
    if first != Some("cron") {
        for key in ["start", "end"] {
            if slots.get(key).present() {
                errors.push(FieldError::invalid(
                    field(key),
                    format!("`{key}` only applies to a `cron` schedule"),
                ));
            }
        }
    }

    let request = match first {
        None => {
            errors.push(FieldError::missing(
                "Schedule",
                "no schedule given: give date + time, at, or cron",
            ));
            None
        }
        Some("at") => once_at(&slots, zone, ctx, &mut errors),
        Some("cron") => recurring(&slots, zone, ctx, &mut errors),
        Some(_) => once_date_time(&slots, zone, ctx, &mut errors),
    };
    match request {
        Some(request) if errors.is_empty() => Ok(request),
        _ if errors.is_empty() => {
            Err(FieldError::invalid("Schedule", "the schedule could not be read").into())
        }
        _ => Err(FieldErrors::from(errors)),
    }
}

fn read_slots<'a>(schedule: &'a Map<String, Value>, errors: &mut Vec<FieldError>) -> Slots<'a> {
    let mut slots = Slots([Slot::Absent; 7]);
    for (key, value) in schedule {
        let Some(index) = KEYS.iter().position(|known| known == key) else {
            errors.push(unknown_key(key));
            continue;
        };
        slots.0[index] = match value {
            Value::Null => Slot::Absent,
            Value::String(text) if text.trim().is_empty() => Slot::Absent,
            Value::String(text) => Slot::Text(text),
            other => {
                errors.push(FieldError::invalid(
                    field(key),
                    format!("must be a string, not {}", json_kind(other)),
                ));
                Slot::NotText
            }
        };
    }
    slots
}

fn unknown_key(key: &str) -> FieldError {
    let hint = KEYS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(key.trim()))
        .map(|known| format!(" (did you mean `{known}`?)"))
        .unwrap_or_default();
    FieldError::invalid(
        field(key),
        format!(
            "unknown key `{key}`{hint}; the accepted keys are {}",
            KEYS.join(", ")
        ),
    )
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn once_date_time(
    slots: &Slots<'_>,
    zone: Option<Tz>,
    ctx: &ScheduleContext,
    errors: &mut Vec<FieldError>,
) -> Option<ScheduleRequest> {
    let mut required = |key: &str, other: &str| {
        let slot = slots.get(key);
        if !slot.present() {
            errors.push(FieldError::missing(
                field(key),
                format!("`{key}` is required with `{other}`"),
            ));
        }
        slot.text()
    };
    let date_text = required("date", "time");
    let time_text = required("time", "date");
    let date = date_text.and_then(|text| {
        parse_date(text)
            .map_err(|message| errors.push(FieldError::invalid(field("date"), message)))
            .ok()
    });
    let time = time_text.and_then(|text| {
        parse_time(text)
            .map_err(|message| errors.push(FieldError::invalid(field("time"), message)))
            .ok()
    });
    let (date, time, zone) = (date?, time?, zone?);
    schedule_date_time(date, time, zone, ctx)
        .map(ScheduleRequest::Once)
        .map_err(|message| errors.push(FieldError::invalid(field("date"), message)))
        .ok()
}

fn once_at(
    slots: &Slots<'_>,
    zone: Option<Tz>,
    ctx: &ScheduleContext,
    errors: &mut Vec<FieldError>,
) -> Option<ScheduleRequest> {
    let text = slots.get("at").text()?;
    let instant = parse_instant(text)
        .map_err(|message| errors.push(FieldError::invalid(field("at"), message)))
        .ok()?;
    let Some((run_at, clamped_to_now)) = not_in_past(instant, ctx) else {
        errors.push(FieldError::invalid(
            field("at"),
            past_message(&format!("`{}`", text.trim()), ctx),
        ));
        return None;
    };
    Some(ScheduleRequest::Once(OnceSchedule {
        run_at,
        zone: zone?,
        clamped_to_now,
    }))
}

fn recurring(
    slots: &Slots<'_>,
    zone: Option<Tz>,
    ctx: &ScheduleContext,
    errors: &mut Vec<FieldError>,
) -> Option<ScheduleRequest> {
    let mut bound = |key: &str| match slots.get(key).text() {
        Some(text) => parse_instant(text)
            .map(Some)
            .map_err(|message| errors.push(FieldError::invalid(field(key), message))),
        None if slots.get(key).present() => Err(()),
        None => Ok(None),
    };
    let start = bound("start");
    let end = bound("end");
    let expression = slots.get("cron").text()?;
    let (start, end, zone) = (start.ok()?, end.ok()?, zone?);
    CronSchedule::parse_at(expression, zone, start, end, ctx.min_interval, ctx.now)
        .map(ScheduleRequest::Recurring)
        .map_err(|error| errors.push(error.into()))
        .ok()
}
