//! The part of parsing both directions share: text -> object -> (dialect, event name, value).

use serde_json::{Map, Value};

use crate::{Dialect, FrameError};

/// Event names in errors are cut to this many characters: they come from outside and end up
/// in logs and in error replies.
pub const MAX_REPORTED_EVENT_CHARS: usize = 64;

/// A frame whose envelope is valid but whose event is not yet interpreted.
pub(crate) struct Envelope {
    pub(crate) dialect: Dialect,
    pub(crate) name: String,
    /// `Value::Null` when the frame has no `value` key.
    pub(crate) value: Value,
}

pub(crate) fn parse_envelope(text: &str) -> Result<Envelope, FrameError> {
    // serde_json stops at its recursion limit with an error, so deep nesting cannot overflow
    // the stack here.
    let parsed: Value = serde_json::from_str(text).map_err(|error| FrameError::NotJson {
        reason: error.to_string(),
    })?;
    let Value::Object(mut object) = parsed else {
        return Err(FrameError::NotObject);
    };
    let (dialect, name) = take_event(&mut object)?;
    let value = object.remove("value").unwrap_or(Value::Null);
    Ok(Envelope {
        dialect,
        name,
        value,
    })
}

/// `_event` wins whenever it is present, even when it is not a string and `event` is: a
/// malformed `_event` is a broken `_event`-dialect frame, not a valid `event`-dialect one.
fn take_event(object: &mut Map<String, Value>) -> Result<(Dialect, String), FrameError> {
    for dialect in [Dialect::Underscore, Dialect::Plain] {
        match object.remove(dialect.key()) {
            Some(Value::String(name)) => return Ok((dialect, name)),
            Some(_) => return Err(FrameError::MissingEvent),
            None => {}
        }
    }
    Err(FrameError::MissingEvent)
}

/// Finds the canonical name that `received` spells, ignoring ASCII case and surrounding
/// white space.
pub(crate) fn match_event(received: &str, known: &[&'static str]) -> Option<&'static str> {
    let trimmed = received.trim();
    known
        .iter()
        .copied()
        .find(|canonical| trimmed.eq_ignore_ascii_case(canonical))
}

pub(crate) fn unknown_event(name: &str) -> FrameError {
    FrameError::UnknownEvent {
        name: name.chars().take(MAX_REPORTED_EVENT_CHARS).collect(),
    }
}

/// A job id as robots write it: a JSON integer, or a string of ASCII digits (robots built on
/// loosely typed JSON libraries stringify numbers). Floats, signs in strings and surrounding
/// white space are refused so that one id has one spelling.
pub(crate) fn job_id_from_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(digits)
            if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) =>
        {
            digits.parse().ok()
        }
        _ => None,
    }
}

/// Writes `{"<key>":"<event>","value":<value>}` with the keys in that order.
pub(crate) fn encode_envelope(dialect: Dialect, event: &str, value: Value) -> String {
    let mut object = Map::with_capacity(2);
    object.insert(dialect.key().to_owned(), Value::String(event.to_owned()));
    object.insert("value".to_owned(), value);
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matching_ignores_ascii_case_and_surrounding_space() {
        let known = ["Decline pkg reception", "client robot message"];
        assert_eq!(
            match_event(" decline PKG reception\t", &known),
            Some("Decline pkg reception")
        );
        assert_eq!(match_event("decline  pkg reception", &known), None);
        assert_eq!(match_event("", &known), None);
    }

    #[test]
    fn job_ids() {
        assert_eq!(job_id_from_value(&json!(7)), Some(7));
        assert_eq!(job_id_from_value(&json!(-3)), Some(-3));
        assert_eq!(job_id_from_value(&json!("42")), Some(42));
        assert_eq!(job_id_from_value(&json!("0042")), Some(42));
        assert_eq!(job_id_from_value(&json!("")), None);
        assert_eq!(job_id_from_value(&json!("-1")), None);
        assert_eq!(job_id_from_value(&json!(" 4")), None);
        assert_eq!(job_id_from_value(&json!("99999999999999999999")), None);
        assert_eq!(job_id_from_value(&json!(u64::MAX)), None);
        assert_eq!(job_id_from_value(&json!(7.0)), None);
        assert_eq!(job_id_from_value(&json!(null)), None);
        assert_eq!(job_id_from_value(&json!([7])), None);
    }

    #[test]
    fn unknown_event_names_are_cut() {
        let long = "é".repeat(1000);
        let FrameError::UnknownEvent { name } = unknown_event(&long) else {
            panic!("wrong variant");
        };
        assert_eq!(name.chars().count(), MAX_REPORTED_EVENT_CHARS);
    }

    #[test]
    fn envelope_without_value_is_null() {
        let envelope = parse_envelope(r#"{"event":"x"}"#).unwrap();
        assert_eq!(envelope.dialect, Dialect::Plain);
        assert_eq!(envelope.name, "x");
        assert_eq!(envelope.value, Value::Null);
    }
}
