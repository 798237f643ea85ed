//! Validation of the `client robot metaData` value.

use serde_json::{Map, Value};

use crate::{EXTENDED_PROTOCOL_VERSION, MetadataError, RobotAddress};

/// Longest accepted `robotName` / `robotAddress`, in characters (not bytes).
pub const MAX_FIELD_CHARS: usize = 255;

const ROBOT_NAME: &str = "robotName";
const ROBOT_ADDRESS: &str = "robotAddress";

/// Metadata a robot announced, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// As received (surrounding white space is kept; only a blank name is refused).
    pub robot_name: String,
    pub robot_address: RobotAddress,
    /// `userID` (README era, normally a number) if present and not null, else `uuid` (the C#
    /// robot, normally a string), as received. Either identifies the robot's user.
    pub user_id: Option<Value>,
    pub protocol: ProtocolLevel,
    /// The whole metadata object as received, extra fields included.
    pub fields: Map<String, Value>,
}

/// Which protocol a robot speaks; decides what the server may send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolLevel {
    /// Robots in the field: only notifications and metadata declines, no acks.
    #[default]
    Field,
    /// The robot announced `"protocol"` as an integer >= 2: acks, resends, `registered` and
    /// `error` messages.
    Extended,
}

impl Metadata {
    /// Validates a metadata value: an object, or a string holding a JSON object (README-era
    /// robots and the browser test client sent it that way).
    pub fn from_value(value: &Value) -> Result<Metadata, MetadataError> {
        let decoded;
        let object = match value {
            Value::Null => return Err(MetadataError::Missing),
            Value::Object(object) => object,
            Value::String(encoded) => {
                decoded = serde_json::from_str::<Value>(encoded).map_err(|error| {
                    MetadataError::BadJsonString {
                        reason: error.to_string(),
                    }
                })?;
                match &decoded {
                    Value::Object(object) => object,
                    _ => return Err(MetadataError::NotObject),
                }
            }
            _ => return Err(MetadataError::NotObject),
        };
        let robot_name = required_text(object, ROBOT_NAME)?;
        let robot_address = required_text(object, ROBOT_ADDRESS)?;
        Ok(Metadata {
            robot_name: robot_name.to_owned(),
            robot_address: RobotAddress::new(robot_address),
            user_id: user_id(object),
            protocol: protocol_level(object),
            fields: object.clone(),
        })
    }

    pub fn is_extended(&self) -> bool {
        self.protocol == ProtocolLevel::Extended
    }
}

/// `null` counts as missing: to the JavaScript original, `null` and `undefined` were the same
/// absence.
fn required_text<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, MetadataError> {
    let text = match object.get(field) {
        None | Some(Value::Null) => return Err(MetadataError::MissingField { field }),
        Some(Value::String(text)) => text.as_str(),
        Some(_) => return Err(MetadataError::NotString { field }),
    };
    if text.trim().is_empty() {
        return Err(MetadataError::Empty { field });
    }
    if text.chars().count() > MAX_FIELD_CHARS {
        return Err(MetadataError::TooLong {
            field,
            max: MAX_FIELD_CHARS,
        });
    }
    // U+2028/U+2029 are not Cc but break lines in logs and in JavaScript string literals.
    if text
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err(MetadataError::ControlCharacters { field });
    }
    Ok(text)
}

fn user_id(object: &Map<String, Value>) -> Option<Value> {
    ["userID", "uuid"]
        .into_iter()
        .filter_map(|key| object.get(key))
        .find(|value| !value.is_null())
        .cloned()
}

/// Only an integer counts: `"2"` or `2.0` leave the robot on the field protocol, so a typo can
/// never opt a field robot into messages it would misread as packages.
fn protocol_level(object: &Map<String, Value>) -> ProtocolLevel {
    let announced = object.get("protocol").and_then(|value| match value {
        Value::Number(number) => number.as_u64(),
        _ => None,
    });
    match announced {
        Some(level) if level >= u64::from(EXTENDED_PROTOCOL_VERSION) => ProtocolLevel::Extended,
        _ => ProtocolLevel::Field,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid(value: Value) -> Metadata {
        Metadata::from_value(&value).unwrap()
    }

    fn invalid(value: Value) -> MetadataError {
        Metadata::from_value(&value).unwrap_err()
    }

    #[test]
    fn c_sharp_robot_object_with_uuid() {
        let metadata = valid(json!({
            "robotName": "DESKTOP-1",
            "robotAddress": "00:1a:ff:db:45:c2",
            "uuid": "5b1c0e36-3b0c-4d3a-9f4e-1d2c3b4a5f60",
            "os": "Windows 10",
        }));
        assert_eq!(metadata.robot_name, "DESKTOP-1");
        assert_eq!(metadata.robot_address.as_str(), "001AFFDB45C2");
        assert_eq!(
            metadata.user_id,
            Some(json!("5b1c0e36-3b0c-4d3a-9f4e-1d2c3b4a5f60"))
        );
        assert_eq!(metadata.protocol, ProtocolLevel::Field);
        assert!(!metadata.is_extended());
        assert_eq!(metadata.fields.get("os"), Some(&json!("Windows 10")));
        assert_eq!(metadata.fields.len(), 4);
    }

    #[test]
    fn readme_era_string_with_user_id() {
        let metadata = valid(json!(
            r#"{"robotName":"r","robotAddress":"free text address","userID":4}"#
        ));
        assert_eq!(metadata.robot_address.as_str(), "free text address");
        assert_eq!(metadata.user_id, Some(json!(4)));
    }

    #[test]
    fn user_id_preference() {
        let base = |extra: Value| {
            let mut object = json!({"robotName": "r", "robotAddress": "a"});
            if let (Value::Object(object), Value::Object(extra)) = (&mut object, extra) {
                object.extend(extra);
            }
            valid(object).user_id
        };
        assert_eq!(base(json!({"userID": 4, "uuid": "u"})), Some(json!(4)));
        assert_eq!(base(json!({"userID": null, "uuid": "u"})), Some(json!("u")));
        assert_eq!(base(json!({"uuid": "u"})), Some(json!("u")));
        assert_eq!(base(json!({"userID": "4"})), Some(json!("4")));
        assert_eq!(base(json!({"uuid": null})), None);
        assert_eq!(base(json!({})), None);
    }

    #[test]
    fn extended_protocol_detection() {
        let level = |protocol: Value| {
            valid(json!({"robotName": "r", "robotAddress": "a", "protocol": protocol})).protocol
        };
        assert_eq!(level(json!(2)), ProtocolLevel::Extended);
        assert_eq!(level(json!(3)), ProtocolLevel::Extended);
        assert_eq!(level(json!(1)), ProtocolLevel::Field);
        assert_eq!(level(json!(0)), ProtocolLevel::Field);
        assert_eq!(level(json!(-2)), ProtocolLevel::Field);
        assert_eq!(level(json!(2.0)), ProtocolLevel::Field);
        assert_eq!(level(json!("2")), ProtocolLevel::Field);
        assert_eq!(level(json!(null)), ProtocolLevel::Field);
        assert_eq!(
            valid(json!({"robotName": "r", "robotAddress": "a"})).protocol,
            ProtocolLevel::Field
        );
    }

    #[test]
    fn value_shape_errors() {
        assert_eq!(invalid(Value::Null), MetadataError::Missing);
        assert_eq!(invalid(json!([1])), MetadataError::NotObject);
        assert_eq!(invalid(json!(4)), MetadataError::NotObject);
        assert_eq!(invalid(json!("[1]")), MetadataError::NotObject);
        assert_eq!(invalid(json!("null")), MetadataError::NotObject);
        assert_eq!(invalid(json!("\"{}\"")), MetadataError::NotObject);
        assert!(matches!(
            invalid(json!("{robotName:")),
            MetadataError::BadJsonString { .. }
        ));
        assert!(matches!(
            invalid(json!("")),
            MetadataError::BadJsonString { .. }
        ));
    }

    #[test]
    fn field_errors() {
        let name = "robotName";
        let address = "robotAddress";
        let cases = [
            (
                json!({"robotAddress": "a"}),
                MetadataError::MissingField { field: name },
            ),
            (
                json!({"robotName": null, "robotAddress": "a"}),
                MetadataError::MissingField { field: name },
            ),
            (
                json!({"robotName": "r"}),
                MetadataError::MissingField { field: address },
            ),
            (
                json!({"robotName": 5, "robotAddress": "a"}),
                MetadataError::NotString { field: name },
            ),
            (
                json!({"robotName": "r", "robotAddress": ["a"]}),
                MetadataError::NotString { field: address },
            ),
            (
                json!({"robotName": "", "robotAddress": "a"}),
                MetadataError::Empty { field: name },
            ),
            (
                json!({"robotName": "r", "robotAddress": " \t "}),
                MetadataError::Empty { field: address },
            ),
            (
                json!({"robotName": "r\u{0}", "robotAddress": "a"}),
                MetadataError::ControlCharacters { field: name },
            ),
            (
                json!({"robotName": "r", "robotAddress": "a\nb"}),
                MetadataError::ControlCharacters { field: address },
            ),
            (
                json!({"robotName": "r\u{85}", "robotAddress": "a"}),
                MetadataError::ControlCharacters { field: name },
            ),
            (
                json!({"robotName": "r\u{2028}", "robotAddress": "a"}),
                MetadataError::ControlCharacters { field: name },
            ),
            (
                json!({"robotName": "r", "robotAddress": "a\u{2029}"}),
                MetadataError::ControlCharacters { field: address },
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(invalid(value.clone()), expected, "{value}");
        }
    }

    #[test]
    fn length_is_counted_in_characters() {
        let at_limit = "é".repeat(MAX_FIELD_CHARS);
        assert!(at_limit.len() > MAX_FIELD_CHARS);
        let metadata = valid(json!({"robotName": at_limit, "robotAddress": "a"}));
        assert_eq!(metadata.robot_name.chars().count(), MAX_FIELD_CHARS);

        let over = "x".repeat(MAX_FIELD_CHARS + 1);
        assert_eq!(
            invalid(json!({"robotName": "r", "robotAddress": over})),
            MetadataError::TooLong {
                field: "robotAddress",
                max: MAX_FIELD_CHARS
            }
        );
    }

    #[test]
    fn name_is_kept_as_received() {
        let metadata = valid(json!({"robotName": " PC 1 ", "robotAddress": "a"}));
        assert_eq!(metadata.robot_name, " PC 1 ");
    }
}
