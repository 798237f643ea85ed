//! Robot -> server frames.

use serde_json::{Map, Value};

use crate::envelope::{
    encode_envelope, job_id_from_value, match_event, parse_envelope, unknown_event,
};
use crate::event::{
    ACK_PKG_RECEPTION, CLIENT_ROBOT_MESSAGE, CLIENT_ROBOT_METADATA, DECLINE_PKG_RECEPTION,
};
use crate::{Dialect, FrameError};

/// A message a robot sends to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum RobotMessage {
    /// `client robot metaData`: the raw value (an object, or a JSON-encoded string of one).
    /// Invalid metadata is not a bad frame; validate it with
    /// [`Metadata::from_value`](crate::Metadata::from_value).
    MetaData(Value),
    /// `client robot message`: any JSON value. An object may be a
    /// [`JobReport`](crate::JobReport).
    Message(Value),
    /// `Decline pkg reception`: the package name, `""` meaning "any package". A value that is
    /// not a string (the field robot's `null`, or none at all) also means "any".
    DeclinePackage(String),
    /// `Ack pkg reception` (extended protocol): the robot received the package of this job.
    Ack { job_id: i64 },
}

/// A parsed robot frame together with the dialect it was written in.
#[derive(Debug, Clone, PartialEq)]
pub struct RobotFrame {
    pub dialect: Dialect,
    pub message: RobotMessage,
}

const ROBOT_EVENTS: [&str; 4] = [
    CLIENT_ROBOT_METADATA,
    CLIENT_ROBOT_MESSAGE,
    DECLINE_PKG_RECEPTION,
    ACK_PKG_RECEPTION,
];

/// Parses one text frame a robot sent.
///
/// The dialect is the key that carried the event name; the server uses the first valid
/// frame's dialect for the whole connection.
pub fn parse_robot_frame(text: &str) -> Result<RobotFrame, FrameError> {
    let envelope = parse_envelope(text)?;
    let Some(event) = match_event(&envelope.name, &ROBOT_EVENTS) else {
        return Err(unknown_event(&envelope.name));
    };
    let value = envelope.value;
    let message = match event {
        CLIENT_ROBOT_METADATA => RobotMessage::MetaData(value),
        CLIENT_ROBOT_MESSAGE => RobotMessage::Message(value),
        DECLINE_PKG_RECEPTION => RobotMessage::DeclinePackage(match value {
            Value::String(name) => name,
            _ => String::new(),
        }),
        _ => RobotMessage::Ack {
            job_id: ack_job_id(&value)?,
        },
    };
    Ok(RobotFrame {
        dialect: envelope.dialect,
        message,
    })
}

/// The canonical form is `{"job_id": N}`; a bare id is accepted too because it costs nothing
/// and is the first thing a robot author tries.
fn ack_job_id(value: &Value) -> Result<i64, FrameError> {
    let id = match value {
        Value::Object(object) => object.get("job_id"),
        other => Some(other),
    };
    let bad = |reason: &str| FrameError::BadValue {
        event: ACK_PKG_RECEPTION,
        reason: reason.to_owned(),
    };
    match id {
        None | Some(Value::Null) => Err(bad("missing job_id")),
        Some(id) => job_id_from_value(id)
            .ok_or_else(|| bad("job_id must be an integer or a string of digits")),
    }
}

impl RobotFrame {
    pub fn new(dialect: Dialect, message: RobotMessage) -> RobotFrame {
        RobotFrame { dialect, message }
    }

    /// Writes the frame with the canonical event name, in this frame's dialect.
    pub fn encode(&self) -> String {
        let (event, value) = match &self.message {
            RobotMessage::MetaData(value) => (CLIENT_ROBOT_METADATA, value.clone()),
            RobotMessage::Message(value) => (CLIENT_ROBOT_MESSAGE, value.clone()),
            RobotMessage::DeclinePackage(name) => {
                (DECLINE_PKG_RECEPTION, Value::String(name.clone()))
            }
            RobotMessage::Ack { job_id } => {
                let mut object = Map::with_capacity(1);
                object.insert("job_id".to_owned(), Value::from(*job_id));
                (ACK_PKG_RECEPTION, Value::Object(object))
            }
        };
        encode_envelope(self.dialect, event, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> RobotFrame {
        parse_robot_frame(text).unwrap()
    }

    #[test]
    fn c_sharp_robot_metadata() {
        let frame = parse(
            r#"{"_event":"client robot metaData","value":{"robotName":"PC-1","robotAddress":"001AFFDB45C2","uuid":"u-1"}}"#,
        );
        assert_eq!(frame.dialect, Dialect::Underscore);
        assert_eq!(
            frame.message,
            RobotMessage::MetaData(
                json!({"robotName":"PC-1","robotAddress":"001AFFDB45C2","uuid":"u-1"})
            )
        );
    }

    #[test]
    fn readme_era_metadata_as_string() {
        let frame = parse(
            r#"{"event":"client robot metaData","value":"{\"robotName\":\"a\",\"robotAddress\":\"b\",\"userID\":4}"}"#,
        );
        assert_eq!(frame.dialect, Dialect::Plain);
        assert_eq!(
            frame.message,
            RobotMessage::MetaData(json!(r#"{"robotName":"a","robotAddress":"b","userID":4}"#))
        );
    }

    #[test]
    fn underscore_wins_when_both_keys_are_present() {
        let frame = parse(r#"{"event":"nonsense","_event":"client robot message","value":1}"#);
        assert_eq!(frame.dialect, Dialect::Underscore);
        assert_eq!(frame.message, RobotMessage::Message(json!(1)));
    }

    #[test]
    fn non_string_underscore_event_is_missing_even_with_a_string_event() {
        for text in [
            r#"{"_event":5,"event":"client robot message"}"#,
            r#"{"_event":null,"event":"client robot message"}"#,
        ] {
            assert_eq!(parse_robot_frame(text), Err(FrameError::MissingEvent));
        }
    }

    #[test]
    fn missing_event() {
        for text in [
            r#"{}"#,
            r#"{"value":"x"}"#,
            r#"{"event":{"name":"client robot message"}}"#,
            r#"{"Event":"client robot message"}"#,
        ] {
            assert_eq!(
                parse_robot_frame(text),
                Err(FrameError::MissingEvent),
                "{text}"
            );
        }
    }

    #[test]
    fn event_names_ignore_case_and_surrounding_space() {
        let old = parse(r#"{"event":"decline pkg reception","value":"pkg"}"#);
        let new = parse(r#"{"event":"Decline pkg reception","value":"pkg"}"#);
        assert_eq!(old, new);
        let odd = parse(r#"{"_event":"  CLIENT ROBOT MESSAGE \n","value":"hi"}"#);
        assert_eq!(odd.message, RobotMessage::Message(json!("hi")));
    }

    #[test]
    fn unknown_event_keeps_the_name() {
        assert_eq!(
            parse_robot_frame(r#"{"_event":"studio package metaData","value":{}}"#),
            Err(FrameError::UnknownEvent {
                name: "studio package metaData".into()
            })
        );
        // Server-only events are unknown when a robot sends them.
        assert!(matches!(
            parse_robot_frame(r#"{"_event":"notification"}"#),
            Err(FrameError::UnknownEvent { .. })
        ));
        // Inner white space is significant.
        assert!(matches!(
            parse_robot_frame(r#"{"_event":"client  robot message"}"#),
            Err(FrameError::UnknownEvent { .. })
        ));
    }

    #[test]
    fn not_json() {
        for text in [
            "",
            "decline metadata reception",
            "{",
            r#"{"_event":"client robot message","value":"\ud800"}"#,
            r#"{"_event":"client robot message",}"#,
        ] {
            let error = parse_robot_frame(text).unwrap_err();
            assert_eq!(error.code(), "not_json", "{text}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            r#"{{"_event":"client robot message","value":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(
            parse_robot_frame(&deep),
            Err(FrameError::NotJson { .. })
        ));
    }

    #[test]
    fn not_object() {
        for text in ["null", "[]", "\"client robot message\"", "7", "true"] {
            assert_eq!(
                parse_robot_frame(text),
                Err(FrameError::NotObject),
                "{text}"
            );
        }
    }

    #[test]
    fn absent_value_is_null() {
        assert_eq!(
            parse(r#"{"_event":"client robot metaData"}"#).message,
            RobotMessage::MetaData(Value::Null)
        );
        assert_eq!(
            parse(r#"{"_event":"client robot message"}"#).message,
            RobotMessage::Message(Value::Null)
        );
    }

    #[test]
    fn decline_package_values() {
        let cases = [
            (r#""pkg-1""#, "pkg-1"),
            (r#""""#, ""),
            ("null", ""),
            ("5", ""),
            ("{}", ""),
        ];
        for (value, expected) in cases {
            let text = format!(r#"{{"_event":"Decline pkg reception","value":{value}}}"#);
            assert_eq!(
                parse(&text).message,
                RobotMessage::DeclinePackage(expected.into())
            );
        }
        assert_eq!(
            parse(r#"{"_event":"Decline pkg reception"}"#).message,
            RobotMessage::DeclinePackage(String::new())
        );
    }

    #[test]
    fn ack_values() {
        for value in [r#"{"job_id":7}"#, r#"{"job_id":"7"}"#, "7", r#""7""#] {
            let text = format!(r#"{{"_event":"Ack pkg reception","value":{value}}}"#);
            assert_eq!(
                parse(&text).message,
                RobotMessage::Ack { job_id: 7 },
                "{value}"
            );
        }
    }

    #[test]
    fn ack_with_bad_job_id() {
        for value in [
            "",
            r#","value":null"#,
            r#","value":{}"#,
            r#","value":{"job_id":null}"#,
            r#","value":{"job_id":7.5}"#,
            r#","value":{"job_id":"seven"}"#,
            r#","value":[7]"#,
            r#","value":true"#,
        ] {
            let text = format!(r#"{{"_event":"Ack pkg reception"{value}}}"#);
            let error = parse_robot_frame(&text).unwrap_err();
            assert!(
                matches!(
                    error,
                    FrameError::BadValue {
                        event: ACK_PKG_RECEPTION,
                        ..
                    }
                ),
                "{value}: {error:?}"
            );
            assert_eq!(error.code(), "bad_value");
        }
    }

    #[test]
    fn encodes_canonical_names() {
        let cases = [
            (
                RobotFrame::new(
                    Dialect::Underscore,
                    RobotMessage::MetaData(json!({"robotName":"a"})),
                ),
                r#"{"_event":"client robot metaData","value":{"robotName":"a"}}"#,
            ),
            (
                RobotFrame::new(Dialect::Plain, RobotMessage::Message(json!("hello"))),
                r#"{"event":"client robot message","value":"hello"}"#,
            ),
            (
                RobotFrame::new(
                    Dialect::Underscore,
                    RobotMessage::DeclinePackage(String::new()),
                ),
                r#"{"_event":"Decline pkg reception","value":""}"#,
            ),
            (
                RobotFrame::new(Dialect::Plain, RobotMessage::Ack { job_id: 12 }),
                r#"{"event":"Ack pkg reception","value":{"job_id":12}}"#,
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(frame.encode(), expected);
            assert_eq!(parse(expected), frame);
        }
    }
}
