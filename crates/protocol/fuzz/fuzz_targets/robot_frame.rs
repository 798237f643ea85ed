//! Fuzz target `robot_frame`: everything a robot (or a server, for robot clients) can put in a
//! WebSocket text frame.
//!
//! - `parse_robot_frame` and `parse_server_frame` never panic;
//! - a parsed frame re-encodes to text that parses back to an equal frame (robot and server
//!   direction), and re-encoding is stable;
//! - `Metadata::from_value` and `JobReport::from_value` never panic on the frame's value (also
//!   for frames whose event is unknown), and what they accept obeys their documented rules;
//! - error codes and messages can be rendered.
//!
//! WebSocket text frames are UTF-8 by definition (the transport rejects anything else), so
//! non-UTF-8 inputs are skipped.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rpa_protocol::{
    FrameError, JobReport, MAX_FIELD_CHARS, MAX_REPORTED_EVENT_CHARS, Metadata, RobotFrame,
    RobotMessage, ServerMessage, parse_robot_frame, parse_server_frame,
};
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    robot_direction(text);
    server_direction(text);
    values_of_any_frame(text);
});

fn robot_direction(text: &str) {
    match parse_robot_frame(text) {
        Ok(frame) => {
            let encoded = frame.encode();
            let again = parse_robot_frame(&encoded);
            let same = again
                .as_ref()
                .is_ok_and(|again| same_robot_frame(again, &frame));
            assert!(
                same,
                "robot frame does not round-trip\ninput:   {text:?}\nencoded: {encoded:?}\n\
                 first:   {frame:?}\nsecond:  {again:?}"
            );
            match &frame.message {
                RobotMessage::MetaData(value) | RobotMessage::Message(value) => {
                    check_value(value);
                }
                RobotMessage::DeclinePackage(_) | RobotMessage::Ack { .. } => {}
            }
        }
        Err(error) => check_error(&error),
    }
}

fn server_direction(text: &str) {
    match parse_server_frame(text) {
        Ok((dialect, message)) => {
            let encoded = message.encode(dialect);
            let again = parse_server_frame(&encoded);
            let same = again.as_ref().is_ok_and(|(again_dialect, again)| {
                *again_dialect == dialect && same_server_message(again, &message)
            });
            assert!(
                same,
                "server frame does not round-trip\ninput:   {text:?}\nencoded: {encoded:?}\n\
                 first:   {message:?}\nsecond:  {again:?}"
            );
        }
        Err(error) => check_error(&error),
    }
}

/// The metadata and report validators see every `value` that reaches them in the server, and
/// a few that do not (frames with an unknown event), which costs nothing and widens coverage.
fn values_of_any_frame(text: &str) {
    if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text)
        && let Some(value) = object.get("value")
    {
        check_value(value);
    }
}

fn check_value(value: &Value) {
    if let Ok(metadata) = Metadata::from_value(value) {
        for (field, text) in [
            ("robotName", metadata.robot_name.as_str()),
            // The address is normalised; the raw field is checked instead.
            (
                "robotAddress",
                metadata
                    .fields
                    .get("robotAddress")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
        ] {
            assert!(!text.trim().is_empty(), "accepted blank {field}");
            assert!(
                text.chars().count() <= MAX_FIELD_CHARS,
                "accepted long {field}"
            );
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
                "accepted control characters in {field}: {text:?}"
            );
        }
        assert!(!metadata.robot_address.as_str().is_empty());
        let _ = metadata.is_extended();
    } else if let Err(error) = Metadata::from_value(value) {
        assert!(!error.code().is_empty());
        let _ = error.to_string();
    }
    if let Some(report) = JobReport::from_value(value) {
        // A report survives the way a robot client would send it back.
        assert_eq!(
            JobReport::from_value(&report.to_value()),
            Some(report.clone()),
            "job report does not round-trip through to_value"
        );
    }
}

fn check_error(error: &FrameError) {
    assert!(!error.code().is_empty());
    let _ = error.to_string();
    if let FrameError::UnknownEvent { name } = error {
        assert!(
            name.chars().count() <= MAX_REPORTED_EVENT_CHARS,
            "unknown event name not cut"
        );
    }
}

// Equality for round trips. serde_json is built without its `float_roundtrip` feature (as in
// the workspace), so its float parser is "best effort": the shortest decimal it writes for an
// f64 can read back one or two units in the last place off (found by this target:
// `9223372055787.467` reads back as `9223372055787.469`). That is serde_json's documented
// trade-off, not a protocol bug, so floats compare within a few ULPs; everything else,
// including integers, must be exactly equal.

fn same_robot_frame(a: &RobotFrame, b: &RobotFrame) -> bool {
    a.dialect == b.dialect
        && match (&a.message, &b.message) {
            (RobotMessage::MetaData(x), RobotMessage::MetaData(y))
            | (RobotMessage::Message(x), RobotMessage::Message(y)) => same_json(x, y),
            (x, y) => x == y,
        }
}

fn same_server_message(a: &ServerMessage, b: &ServerMessage) -> bool {
    match (a, b) {
        (
            ServerMessage::Notification {
                package: p,
                job_id: i,
            },
            ServerMessage::Notification {
                package: q,
                job_id: j,
            },
        ) => i == j && same_map(p, q),
        (x, y) => x == y,
    }
}

fn same_map(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => close_floats(x, y),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => same_map(x, y),
        (x, y) => x == y,
    }
}

/// Equal, or finite with the same sign and at most 4 representable values apart.
fn close_floats(x: f64, y: f64) -> bool {
    const MAX_ULPS: u64 = 4;
    x == y
        || (x.is_finite()
            && y.is_finite()
            && x.is_sign_negative() == y.is_sign_negative()
            && x.to_bits().abs_diff(y.to_bits()) <= MAX_ULPS)
}
