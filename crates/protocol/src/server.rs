//! Server -> robot frames.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::envelope::{
    encode_envelope, job_id_from_value, match_event, parse_envelope, unknown_event,
};
use crate::event::{DECLINE_METADATA_RECEPTION, ERROR, NOTIFICATION, REGISTERED};
use crate::{Dialect, FrameError};

/// The protocol level an extended robot announces with `"protocol": 2` and the server confirms
/// in [`ServerMessage::Registered`].
pub const EXTENDED_PROTOCOL_VERSION: u32 = 2;

/// A message the server sends to a robot.
///
/// A field robot (not extended) must only ever get `Notification` and `DeclineMetaData`: the
/// C# robot treats every other message as a package notification.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// Package delivery. `package` is the trigger's `Package` object as received; encoding
    /// appends `"job_id": N` as its last key so that a robot can report on the job.
    Notification {
        package: Map<String, Value>,
        job_id: i64,
    },
    /// Metadata rejected. The robot answers by sending its metadata again.
    DeclineMetaData,
    /// Extended protocol only: sent after metadata is accepted.
    Registered {
        connection_id: String,
        protocol: u32,
        ping_interval_ms: u64,
        ack_timeout_ms: u64,
    },
    /// Extended protocol only: the robot sent a bad frame. `code` is
    /// [`FrameError::code`] (or another stable snake_case code).
    Error { code: String, message: String },
}

#[derive(Deserialize)]
struct RegisteredValue {
    connection_id: String,
    protocol: u32,
    ping_interval_ms: u64,
    ack_timeout_ms: u64,
}

#[derive(Deserialize)]
struct ErrorValue {
    code: String,
    message: String,
}

const SERVER_EVENTS: [&str; 4] = [NOTIFICATION, DECLINE_METADATA_RECEPTION, REGISTERED, ERROR];

/// The original service sent a single space, and robots in the field were tested against it.
const DECLINE_METADATA_VALUE: &str = " ";

impl ServerMessage {
    /// Writes the message in the robot's dialect, byte for byte as field robots expect it.
    pub fn encode(&self, dialect: Dialect) -> String {
        let (event, value) = match self {
            ServerMessage::Notification { package, job_id } => {
                (NOTIFICATION, notification_value(dialect, package, *job_id))
            }
            ServerMessage::DeclineMetaData => (
                DECLINE_METADATA_RECEPTION,
                Value::String(DECLINE_METADATA_VALUE.to_owned()),
            ),
            ServerMessage::Registered {
                connection_id,
                protocol,
                ping_interval_ms,
                ack_timeout_ms,
            } => (
                REGISTERED,
                object([
                    ("connection_id", Value::from(connection_id.as_str())),
                    ("protocol", Value::from(*protocol)),
                    ("ping_interval_ms", Value::from(*ping_interval_ms)),
                    ("ack_timeout_ms", Value::from(*ack_timeout_ms)),
                ]),
            ),
            ServerMessage::Error { code, message } => (
                ERROR,
                object([
                    ("code", Value::from(code.as_str())),
                    ("message", Value::from(message.as_str())),
                ]),
            ),
        };
        encode_envelope(dialect, event, value)
    }
}

/// A package notification from the package's JSON text as stored (a JSON object, as the
/// trigger's client wrote it): `"job_id": N` is spliced in as its last key, so numbers beyond
/// 64 bits, escapes and key order reach the robot verbatim, which parsing it into a map would
/// not keep. The bytes are those of [`ServerMessage::Notification`] for a package that map
/// holds exactly. `None` when `package_json` is not a JSON object.
pub fn encode_notification(dialect: Dialect, package_json: &str, job_id: i64) -> Option<String> {
    let package: Map<String, Value> = serde_json::from_str(package_json).ok()?;
    if package.contains_key("job_id") {
        // Never stored so (the key is refused at the trigger): the map's encoding replaces it.
        return Some(ServerMessage::Notification { package, job_id }.encode(dialect));
    }
    let body = package_json.trim().strip_suffix('}')?.trim_end();
    let spliced = if package.is_empty() {
        format!("{{\"job_id\":{job_id}}}")
    } else {
        format!("{body},\"job_id\":{job_id}}}")
    };
    Some(match dialect {
        Dialect::Underscore => encode_envelope(dialect, NOTIFICATION, Value::String(spliced)),
        Dialect::Plain => {
            let head = encode_envelope(dialect, NOTIFICATION, Value::Null);
            // `{"event":"notification","value":null}` with the object in place of `null`.
            format!("{}{spliced}}}", head.strip_suffix("null}")?)
        }
    })
}

/// The C# robot deserialises `value` as a C# string and then parses it, so the `_event`
/// dialect double-encodes; the README era expected the object itself.
fn notification_value(dialect: Dialect, package: &Map<String, Value>, job_id: i64) -> Value {
    let mut package = package.clone();
    // shift_remove keeps the trigger's key order and makes job_id the last key even when the
    // package already carried one.
    package.shift_remove("job_id");
    package.insert("job_id".to_owned(), Value::from(job_id));
    let package = Value::Object(package);
    match dialect {
        Dialect::Underscore => Value::String(package.to_string()),
        Dialect::Plain => package,
    }
}

/// Builds an object whose key order is the order given, which is the wire order.
fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

/// Parses one text frame the server sent; for robot clients and tests.
///
/// A notification's value may be a JSON-encoded string or an object in either dialect; its
/// `job_id` is taken out of the package map. Event names match ignoring ASCII case and
/// surrounding white space, as on the server side.
pub fn parse_server_frame(text: &str) -> Result<(Dialect, ServerMessage), FrameError> {
    let envelope = parse_envelope(text)?;
    let Some(event) = match_event(&envelope.name, &SERVER_EVENTS) else {
        return Err(unknown_event(&envelope.name));
    };
    let value = envelope.value;
    let message = match event {
        NOTIFICATION => parse_notification(value)?,
        DECLINE_METADATA_RECEPTION => ServerMessage::DeclineMetaData,
        REGISTERED => {
            let registered: RegisteredValue = from_value(REGISTERED, value)?;
            ServerMessage::Registered {
                connection_id: registered.connection_id,
                protocol: registered.protocol,
                ping_interval_ms: registered.ping_interval_ms,
                ack_timeout_ms: registered.ack_timeout_ms,
            }
        }
        _ => {
            let error: ErrorValue = from_value(ERROR, value)?;
            ServerMessage::Error {
                code: error.code,
                message: error.message,
            }
        }
    };
    Ok((envelope.dialect, message))
}

fn parse_notification(value: Value) -> Result<ServerMessage, FrameError> {
    let bad = |reason: String| FrameError::BadValue {
        event: NOTIFICATION,
        reason,
    };
    let package = match value {
        Value::String(encoded) => serde_json::from_str::<Value>(&encoded)
            .map_err(|error| bad(format!("package string is not valid JSON: {error}")))?,
        other => other,
    };
    let Value::Object(mut package) = package else {
        return Err(bad("package is not a JSON object".to_owned()));
    };
    let job_id = package
        .shift_remove("job_id")
        .as_ref()
        .and_then(job_id_from_value)
        .ok_or_else(|| bad("package has no valid job_id".to_owned()))?;
    Ok(ServerMessage::Notification { package, job_id })
}

fn from_value<T: for<'de> Deserialize<'de>>(
    event: &'static str,
    value: Value,
) -> Result<T, FrameError> {
    serde_json::from_value(value).map_err(|error| FrameError::BadValue {
        event,
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_package_is_spliced_byte_for_byte_as_the_map_encodes_it() {
        let package = example_package();
        let text = Value::Object(package.clone()).to_string();
        for dialect in [Dialect::Underscore, Dialect::Plain] {
            assert_eq!(
                encode_notification(dialect, &text, 41),
                Some(
                    ServerMessage::Notification {
                        package: package.clone(),
                        job_id: 41
                    }
                    .encode(dialect)
                ),
                "{dialect:?}"
            );
        }
    }

    #[test]
    fn numbers_and_escapes_are_delivered_as_written() {
        let text = r#"{"package_name":"p","path":"a/b","n":123456789012345678901234567890,"f":1.50,"e":"\u00e9"}"#;
        let plain = encode_notification(Dialect::Plain, text, 7).unwrap();
        assert_eq!(
            plain,
            r#"{"event":"notification","value":{"package_name":"p","path":"a/b","n":123456789012345678901234567890,"f":1.50,"e":"\u00e9","job_id":7}}"#
        );
        let underscore = encode_notification(Dialect::Underscore, text, 7).unwrap();
        let frame: Value = serde_json::from_str(&underscore).unwrap();
        assert_eq!(
            frame["value"].as_str().unwrap(),
            r#"{"package_name":"p","path":"a/b","n":123456789012345678901234567890,"f":1.50,"e":"\u00e9","job_id":7}"#
        );
        assert_eq!(encode_notification(Dialect::Plain, "[1]", 7), None);
        assert_eq!(
            encode_notification(Dialect::Plain, "{}", 7).unwrap(),
            r#"{"event":"notification","value":{"job_id":7}}"#
        );
    }

    fn example_package() -> Map<String, Value> {
        let Value::Object(package) = json!({
            "package_name": "package-x74s-eg",
            "path": "cloudinary/studioPackages/pkg1-x74s.std",
        }) else {
            unreachable!()
        };
        package
    }

    fn notification() -> ServerMessage {
        ServerMessage::Notification {
            package: example_package(),
            job_id: 7,
        }
    }

    #[test]
    fn underscore_notification_is_double_encoded() {
        assert_eq!(
            notification().encode(Dialect::Underscore),
            r#"{"_event":"notification","value":"{\"package_name\":\"package-x74s-eg\",\"path\":\"cloudinary/studioPackages/pkg1-x74s.std\",\"job_id\":7}"}"#
        );
    }

    #[test]
    fn plain_notification_is_an_object() {
        assert_eq!(
            notification().encode(Dialect::Plain),
            r#"{"event":"notification","value":{"package_name":"package-x74s-eg","path":"cloudinary/studioPackages/pkg1-x74s.std","job_id":7}}"#
        );
    }

    #[test]
    fn existing_job_id_is_overwritten_and_moved_last() {
        let Value::Object(package) = json!({"job_id": 99, "package_name": "p", "extra": [1]})
        else {
            unreachable!()
        };
        let message = ServerMessage::Notification { package, job_id: 3 };
        assert_eq!(
            message.encode(Dialect::Plain),
            r#"{"event":"notification","value":{"package_name":"p","extra":[1],"job_id":3}}"#
        );
    }

    #[test]
    fn decline_metadata() {
        assert_eq!(
            ServerMessage::DeclineMetaData.encode(Dialect::Underscore),
            r#"{"_event":"Decline metaData reception","value":" "}"#
        );
        assert_eq!(
            ServerMessage::DeclineMetaData.encode(Dialect::Plain),
            r#"{"event":"Decline metaData reception","value":" "}"#
        );
    }

    #[test]
    fn registered() {
        let message = ServerMessage::Registered {
            connection_id: "91f276b6-41e2-49d3-8faf-15141e474610".into(),
            protocol: EXTENDED_PROTOCOL_VERSION,
            ping_interval_ms: 10_000,
            ack_timeout_ms: 30_000,
        };
        assert_eq!(
            message.encode(Dialect::Underscore),
            r#"{"_event":"registered","value":{"connection_id":"91f276b6-41e2-49d3-8faf-15141e474610","protocol":2,"ping_interval_ms":10000,"ack_timeout_ms":30000}}"#
        );
        assert!(
            message
                .encode(Dialect::Plain)
                .starts_with(r#"{"event":"registered","#)
        );
    }

    #[test]
    fn error() {
        let message = ServerMessage::Error {
            code: "not_json".into(),
            message: "frame is not valid JSON".into(),
        };
        assert_eq!(
            message.encode(Dialect::Underscore),
            r#"{"_event":"error","value":{"code":"not_json","message":"frame is not valid JSON"}}"#
        );
        assert_eq!(
            message.encode(Dialect::Plain),
            r#"{"event":"error","value":{"code":"not_json","message":"frame is not valid JSON"}}"#
        );
    }

    #[test]
    fn parses_every_message_back_in_both_dialects() {
        let messages = [
            notification(),
            ServerMessage::DeclineMetaData,
            ServerMessage::Registered {
                connection_id: "c".into(),
                protocol: 2,
                ping_interval_ms: 1,
                ack_timeout_ms: 2,
            },
            ServerMessage::Error {
                code: "bad_value".into(),
                message: "m".into(),
            },
        ];
        for dialect in [Dialect::Underscore, Dialect::Plain] {
            for message in &messages {
                let parsed = parse_server_frame(&message.encode(dialect)).unwrap();
                assert_eq!(parsed, (dialect, message.clone()));
            }
        }
    }

    #[test]
    fn notification_value_form_does_not_depend_on_dialect() {
        let object = r#"{"_event":"notification","value":{"p":1,"job_id":"5"}}"#;
        let string = r#"{"event":"notification","value":"{\"p\":1,\"job_id\":5}"}"#;
        let (_, from_object) = parse_server_frame(object).unwrap();
        let (_, from_string) = parse_server_frame(string).unwrap();
        assert_eq!(from_object, from_string);
        let ServerMessage::Notification { package, job_id } = from_object else {
            panic!("not a notification");
        };
        assert_eq!(job_id, 5);
        assert!(!package.contains_key("job_id"));
    }

    #[test]
    fn bad_server_values() {
        for text in [
            r#"{"_event":"notification","value":"not json"}"#,
            r#"{"_event":"notification","value":"[1]"}"#,
            r#"{"_event":"notification","value":{"package_name":"p"}}"#,
            r#"{"_event":"notification"}"#,
            r#"{"_event":"registered","value":{"connection_id":"c"}}"#,
            r#"{"_event":"registered","value":{"connection_id":"c","protocol":-1,"ping_interval_ms":1,"ack_timeout_ms":1}}"#,
            r#"{"_event":"error","value":"oops"}"#,
        ] {
            let error = parse_server_frame(text).unwrap_err();
            assert_eq!(error.code(), "bad_value", "{text}: {error}");
        }
    }

    #[test]
    fn server_parse_envelope_errors() {
        assert_eq!(parse_server_frame("[]"), Err(FrameError::NotObject));
        assert_eq!(parse_server_frame("{}"), Err(FrameError::MissingEvent));
        assert!(matches!(
            parse_server_frame(r#"{"_event":"client robot message"}"#),
            Err(FrameError::UnknownEvent { .. })
        ));
        assert!(matches!(
            parse_server_frame("\"\\ud800\""),
            Err(FrameError::NotJson { .. })
        ));
        let (dialect, message) =
            parse_server_frame(r#"{"_event":" decline METADATA reception","value":""}"#).unwrap();
        assert_eq!(dialect, Dialect::Underscore);
        assert_eq!(message, ServerMessage::DeclineMetaData);
    }
}
