#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rpa_protocol::{
    Dialect, RobotFrame, RobotMessage, ServerMessage, parse_robot_frame, parse_server_frame,
};
use serde_json::{Map, Value};

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::Underscore), Just(Dialect::Plain)]
}

/// Floats are dyadic fractions: their shortest decimal form parses back to the same bits
/// without serde_json's `float_roundtrip` feature.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 8.0)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            json_map(inner).prop_map(Value::Object),
        ]
    })
}

fn json_map(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((any::<String>(), values), 0..6)
        .prop_map(|entries| entries.into_iter().collect())
}

fn robot_message() -> impl Strategy<Value = RobotMessage> {
    prop_oneof![
        json_value().prop_map(RobotMessage::MetaData),
        json_value().prop_map(RobotMessage::Message),
        any::<String>().prop_map(RobotMessage::DeclinePackage),
        any::<i64>().prop_map(|job_id| RobotMessage::Ack { job_id }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    // encode overwrites a "job_id" key, so a package holding one cannot come back unchanged.
    let package = json_map(json_value()).prop_map(|mut package| {
        package.shift_remove("job_id");
        package
    });
    prop_oneof![
        (package, any::<i64>())
            .prop_map(|(package, job_id)| ServerMessage::Notification { package, job_id }),
        Just(ServerMessage::DeclineMetaData),
        (any::<String>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
            |(connection_id, protocol, ping_interval_ms, ack_timeout_ms)| {
                ServerMessage::Registered {
                    connection_id,
                    protocol,
                    ping_interval_ms,
                    ack_timeout_ms,
                }
            }
        ),
        (any::<String>(), any::<String>())
            .prop_map(|(code, message)| ServerMessage::Error { code, message }),
    ]
}

/// Text assembled from pieces of JSON and of the protocol, so that the parsers are driven past
/// the JSON syntax check far more often than by arbitrary strings alone.
fn jsonish_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(":".to_owned()),
        Just(",".to_owned()),
        Just("\"".to_owned()),
        Just("\"_event\"".to_owned()),
        Just("\"event\"".to_owned()),
        Just("\"value\"".to_owned()),
        Just("\"job_id\"".to_owned()),
        Just("\"client robot metaData\"".to_owned()),
        Just("\"client robot message\"".to_owned()),
        Just("\"decline PKG reception \"".to_owned()),
        Just("\"Ack pkg reception\"".to_owned()),
        Just("\"notification\"".to_owned()),
        Just("\"registered\"".to_owned()),
        Just("\"error\"".to_owned()),
        Just("\"{\\\"job_id\\\":1}\"".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("-0".to_owned()),
        Just("1e999".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just(" ".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z ]{0,4}".prop_map(|s| format!("\"{s}\"")),
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|fragments| fragments.concat())
}

/// The event key and value of a frame, in any dialect.
fn frame_text(key: &str, event: &str, value: &Value) -> String {
    let mut object = Map::new();
    object.insert(key.to_owned(), Value::from(event));
    object.insert("value".to_owned(), value.clone());
    Value::Object(object).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn robot_frames_round_trip(dialect in dialect(), message in robot_message()) {
        let frame = RobotFrame { dialect, message };
        prop_assert_eq!(parse_robot_frame(&frame.encode()), Ok(frame));
    }

    #[test]
    fn server_messages_round_trip(dialect in dialect(), message in server_message()) {
        let text = message.encode(dialect);
        prop_assert_eq!(parse_server_frame(&text), Ok((dialect, message)));
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_text(text in any::<String>()) {
        let _ = parse_robot_frame(&text);
        let _ = parse_server_frame(&text);
    }

    #[test]
    fn parsers_never_panic_on_jsonish_text(text in jsonish_text()) {
        let _ = parse_robot_frame(&text);
        let _ = parse_server_frame(&text);
    }

    #[test]
    fn event_names_ignore_ascii_case_and_surrounding_space(
        dialect in dialect(),
        upper in prop::collection::vec(any::<bool>(), 21),
        padding in "[ \t\n]{0,3}",
        value in json_value(),
    ) {
        let name: String = "client robot message"
            .chars()
            .zip(&upper)
            .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
            .collect();
        let text = frame_text(dialect.key(), &format!("{padding}{name}{padding}"), &value);
        prop_assert_eq!(
            parse_robot_frame(&text),
            Ok(RobotFrame { dialect, message: RobotMessage::Message(value) })
        );
    }

    #[test]
    fn underscore_key_always_wins(event in any::<String>(), value in json_value()) {
        let mut object = Map::new();
        object.insert("event".to_owned(), Value::from(event));
        object.insert("_event".to_owned(), Value::from("client robot metaData"));
        object.insert("value".to_owned(), value.clone());
        let frame = parse_robot_frame(&Value::Object(object).to_string()).unwrap();
        prop_assert_eq!(frame.dialect, Dialect::Underscore);
        prop_assert_eq!(frame.message, RobotMessage::MetaData(value));
    }

    #[test]
    fn metadata_and_reports_never_panic(value in json_value()) {
        let _ = rpa_protocol::Metadata::from_value(&value);
        let _ = rpa_protocol::JobReport::from_value(&value);
        let _ = rpa_protocol::Metadata::from_value(&Value::from(value.to_string()));
    }
}
