use thiserror::Error;

/// Why a WebSocket frame is a *bad frame* (protocol.md, "Bad input").
///
/// A bad frame decides nothing about the connection: the server logs it and, for an extended
/// robot only, answers with [`ServerMessage::Error`](crate::ServerMessage::Error) carrying
/// [`FrameError::code`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A binary frame. The parser only sees text, so the server builds this one itself.
    #[error("binary frames are not accepted; send one JSON object as a text frame")]
    Binary,
    /// The text is not JSON by serde_json's rules (a lone surrogate escape such as `"\ud800"`
    /// and nesting deeper than serde_json's recursion limit both land here).
    #[error("frame is not valid JSON: {reason}")]
    NotJson { reason: String },
    /// Valid JSON, but not an object.
    #[error("frame is not a JSON object")]
    NotObject,
    /// Neither `_event` nor `event` holds a string. When `_event` is present but is not a
    /// string, the frame is rejected even if `event` is a string: `_event` always wins, so a
    /// frame never silently switches dialect because one key is malformed.
    #[error("frame has no string \"_event\" (or \"event\") key")]
    MissingEvent,
    /// The event name is not one this side understands. `name` is the name as received,
    /// cut to [`MAX_REPORTED_EVENT_CHARS`](crate::MAX_REPORTED_EVENT_CHARS) characters because
    /// it ends up in logs and in error replies.
    #[error("unknown event {name:?}")]
    UnknownEvent { name: String },
    /// A known event whose `value` cannot be used. `event` is the canonical event name.
    #[error("bad value for event {event:?}: {reason}")]
    BadValue { event: &'static str, reason: String },
}

impl FrameError {
    /// A stable snake_case code, sent to extended robots in `error` messages; robots may match
    /// on it, so these strings never change.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::Binary => "binary_frame",
            FrameError::NotJson { .. } => "not_json",
            FrameError::NotObject => "not_object",
            FrameError::MissingEvent => "missing_event",
            FrameError::UnknownEvent { .. } => "unknown_event",
            FrameError::BadValue { .. } => "bad_value",
        }
    }
}

/// Why a `client robot metaData` value was declined.
///
/// Invalid metadata is not a bad frame: the server answers `Decline metaData reception` and
/// keeps the socket open, because the C# robot then resends its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    /// The value is absent or `null`.
    #[error("metadata value is missing")]
    Missing,
    /// The value (after decoding a JSON-encoded string) is not an object.
    #[error("metadata value is not a JSON object")]
    NotObject,
    /// The value is a string that does not hold valid JSON.
    #[error("metadata value is a string that is not valid JSON: {reason}")]
    BadJsonString { reason: String },
    /// A required field is absent or `null`.
    #[error("metadata field {field:?} is missing")]
    MissingField { field: &'static str },
    /// A required field is present but not a string.
    #[error("metadata field {field:?} is not a string")]
    NotString { field: &'static str },
    /// A required field is empty or holds only white space.
    #[error("metadata field {field:?} is empty")]
    Empty { field: &'static str },
    /// A required field is longer than `max` characters (Unicode scalar values, not bytes).
    #[error("metadata field {field:?} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    /// A required field holds a control character (Unicode category Cc, or U+2028/U+2029).
    #[error("metadata field {field:?} contains control characters")]
    ControlCharacters { field: &'static str },
}

impl MetadataError {
    /// A stable snake_case code, for logs and for error replies to extended robots.
    pub fn code(&self) -> &'static str {
        match self {
            MetadataError::Missing => "metadata_missing",
            MetadataError::NotObject => "metadata_not_object",
            MetadataError::BadJsonString { .. } => "metadata_bad_json_string",
            MetadataError::MissingField { .. } => "metadata_missing_field",
            MetadataError::NotString { .. } => "metadata_not_string",
            MetadataError::Empty { .. } => "metadata_empty_field",
            MetadataError::TooLong { .. } => "metadata_field_too_long",
            MetadataError::ControlCharacters { .. } => "metadata_control_characters",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_error_codes_are_stable() {
        let cases = [
            (FrameError::Binary, "binary_frame"),
            (FrameError::NotJson { reason: "x".into() }, "not_json"),
            (FrameError::NotObject, "not_object"),
            (FrameError::MissingEvent, "missing_event"),
            (
                FrameError::UnknownEvent { name: "x".into() },
                "unknown_event",
            ),
            (
                FrameError::BadValue {
                    event: "Ack pkg reception",
                    reason: "x".into(),
                },
                "bad_value",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn metadata_error_messages_name_the_field() {
        let error = MetadataError::TooLong {
            field: "robotName",
            max: 255,
        };
        assert_eq!(
            error.to_string(),
            "metadata field \"robotName\" is longer than 255 characters"
        );
        assert_eq!(error.code(), "metadata_field_too_long");
    }
}
