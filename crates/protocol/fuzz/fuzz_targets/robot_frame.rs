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
use serde_json::Value;

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

// Equality for round trips. The workspace builds serde_json with `float_roundtrip` (this
// target found that without it `9223372055787.467` read back as `9223372055787.469`, so a
// number a robot sent could change on its way through), so everything must be exactly equal.

fn same_robot_frame(a: &RobotFrame, b: &RobotFrame) -> bool {
    a == b
}

fn same_server_message(a: &ServerMessage, b: &ServerMessage) -> bool {
    a == b
}
