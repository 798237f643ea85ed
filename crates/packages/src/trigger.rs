//! The job trigger document: `{"Package": {...}, "Robot": {...}, "Schedule": {...}}`.

use serde_json::{Map, Value};

use crate::names::{check_package_name, exceeds_chars, is_forbidden_control};
use crate::path::check_path;
use crate::{MAX_PACKAGE_JSON_BYTES, MAX_ROBOT_FIELD_CHARS};
use rpa_validation::{FieldError, FieldErrors};

/// Largest WebSocket message a robot is sent (protocol limit).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What the `_event` dialect adds around the package once it is JSON-escaped into a string:
/// the envelope `{"_event":"notification","value":""}` (36 bytes) and the escaped
/// `,\"job_id\":-9223372036854775808` the server appends (32 bytes).
const NOTIFICATION_OVERHEAD: usize = 36 + 32;

/// The reserved key that the server adds to the package it delivers.
const JOB_ID_KEY: &str = "job_id";

/// A validated trigger document.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub package: Package,
    pub robot: RobotRef,
    /// The `Schedule` object as received; its content is validated by the scheduler.
    pub schedule: Map<String, Value>,
}

/// A validated `Package` object: a safe `package_name`, a safe `path`, no `job_id`, and
/// small enough to deliver in one message. Extra keys and key order are kept as received,
/// because they are delivered to the robot verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    object: Map<String, Value>,
    // Serialized once at validation, where the size limit needs it anyway.
    json: String,
}

impl Package {
    /// Checks `obj` by the same rules as the `Package` of [`validate_trigger`], for packages
    /// coming from elsewhere (such as the job store), so no unchecked name reaches a path.
    pub fn from_object(obj: Map<String, Value>) -> Result<Package, FieldErrors> {
        let mut problems = FieldErrors::new();
        let json = check_package(&obj, &mut problems);
        match json {
            Some(json) if problems.is_empty() => Ok(Package { object: obj, json }),
            _ => Err(problems),
        }
    }

    pub fn name(&self) -> &str {
        self.str_field("package_name")
    }

    pub fn path(&self) -> &str {
        self.str_field("path")
    }

    fn str_field(&self, key: &str) -> &str {
        // Present and a string by construction.
        self.object.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// The object as received: extra keys kept, key order kept.
    pub fn object(&self) -> &Map<String, Value> {
        &self.object
    }

    pub fn into_object(self) -> Map<String, Value> {
        self.object
    }

    /// Compact JSON of [`Package::object`].
    pub fn to_json(&self) -> String {
        self.json.clone()
    }

    /// Compact JSON of [`Package::object`], borrowed.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// The object delivered to a robot: the package as received plus `"job_id"` as its last
    /// key, so the robot can report on the job.
    pub fn object_with_job_id(&self, job_id: i64) -> Map<String, Value> {
        let mut object = self.object.clone();
        object.insert(JOB_ID_KEY.to_owned(), Value::from(job_id));
        object
    }
}

/// [`validate_trigger`] for a document that arrived as `body` (the text `doc` was parsed from),
/// whose `Package` is then kept as its text, not re-serialized from `doc`: numbers beyond 64
/// bits, escapes and key order reach the robot as the client wrote them (only the white
/// space between tokens is dropped). A `Package` with a key given twice is refused: the
/// server would read one value and the robot perhaps the other.
pub fn validate_trigger_body(doc: &Value, body: &[u8]) -> Result<Trigger, FieldErrors> {
    let mut trigger = validate_trigger(doc)?;
    let invalid = |message: &str| FieldErrors::from(FieldError::invalid("Package", message));
    let raw = verbatim_package(body).ok_or_else(|| {
        invalid("Must appear once in the document, as a JSON object with each key once.")
    })?;
    if top_level_keys(&raw) != Some(trigger.package.object.len()) {
        return Err(invalid("Must hold each key once."));
    }
    let mut problems = FieldErrors::new();
    check_size(&raw, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    trigger.package.json = raw;
    Ok(trigger)
}

/// The `Package` member of a trigger document's text, compacted; `None` when the document has
/// it more than once (or is not a JSON object).
fn verbatim_package(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Document<'a> {
        #[serde(rename = "Package", borrow)]
        package: &'a serde_json::value::RawValue,
    }
    let document: Document<'_> = serde_json::from_slice(body).ok()?;
    Some(compact(document.package.get()))
}

/// JSON text without the white space between tokens; strings (escapes and all) and numbers
/// as written.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// How many members a JSON object's text has, duplicates counted; `None` when it is no object.
fn top_level_keys(json: &str) -> Option<usize> {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut count = 0;
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {
                count += 1;
            }
            Ok(count)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    serde::Deserializer::deserialize_map(&mut deserializer, Count).ok()
}

/// The robot a trigger is for, as received. The server normalises MAC addresses itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotRef {
    /// Optional for a pool (then empty).
    pub robot_name: String,
    pub target: Target,
}

/// One robot, or any free robot of a pool (docs/POOLS.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Address(String),
    Pool(String),
}

impl RobotRef {
    /// The robot's address as received, or None for a pool.
    pub fn robot_address(&self) -> Option<&str> {
        match &self.target {
            Target::Address(address) => Some(address),
            Target::Pool(_) => None,
        }
    }

    pub fn pool(&self) -> Option<&str> {
        match &self.target {
            Target::Pool(pool) => Some(pool),
            Target::Address(_) => None,
        }
    }
}

/// Longest pool name, in characters.
pub const MAX_POOL_CHARS: usize = 64;

/// A pool name: 1 to 64 letters, digits, `.`, `_` or `-` (docs/POOLS.md).
pub fn is_valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_POOL_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The sentence of a field error about a pool name.
pub const POOL_NAME_RULE: &str = "Must be 1 to 64 letters, digits, '.', '_' or '-'.";

/// Validates a whole trigger document and reports every problem in it, in document order.
pub fn validate_trigger(doc: &Value) -> Result<Trigger, FieldErrors> {
    let Some(doc) = doc.as_object() else {
        return Err(FieldErrors::from(FieldError::invalid(
            "",
            "The trigger must be a JSON object with Package, Robot and Schedule objects.",
        )));
    };
    let mut problems = FieldErrors::new();

    let package = section(doc, "Package", &mut problems).and_then(|obj| {
        check_package(obj, &mut problems).map(|json| Package {
            object: obj.clone(),
            json,
        })
    });

    let robot = section(doc, "Robot", &mut problems).and_then(|obj| {
        // A pool instead of an address: any free robot of it; the name is then optional.
        match obj.get("pool") {
            None | Some(Value::Null) => {}
            Some(pool) => {
                if obj.get("robot_address").is_some_and(|v| !v.is_null()) {
                    problems.push(FieldError::invalid(
                        "Robot.pool",
                        "Give robot_address or pool, not both.",
                    ));
                    return None;
                }
                let pool = match pool.as_str() {
                    Some(pool) if is_valid_pool_name(pool) => pool,
                    _ => {
                        problems.push(FieldError::invalid("Robot.pool", POOL_NAME_RULE));
                        return None;
                    }
                };
                let robot_name = match obj.get("robot_name") {
                    None | Some(Value::Null) => Some(""),
                    Some(Value::String(name)) if name.is_empty() => Some(""),
                    Some(_) => robot_field(obj, "robot_name", &mut problems),
                };
                return Some(RobotRef {
                    robot_name: robot_name?.to_owned(),
                    target: Target::Pool(pool.to_owned()),
                });
            }
        }
        let robot_name = robot_field(obj, "robot_name", &mut problems);
        let robot_address = robot_field(obj, "robot_address", &mut problems);
        Some(RobotRef {
            robot_name: robot_name?.to_owned(),
            target: Target::Address(robot_address?.to_owned()),
        })
    });

    let schedule = section(doc, "Schedule", &mut problems);

    match (package, robot, schedule) {
        (Some(package), Some(robot), Some(schedule)) if problems.is_empty() => Ok(Trigger {
            package,
            robot,
            schedule: schedule.clone(),
        }),
        _ => Err(problems),
    }
}

/// A required top-level object.
fn section<'a>(
    doc: &'a Map<String, Value>,
    key: &str,
    problems: &mut FieldErrors,
) -> Option<&'a Map<String, Value>> {
    match doc.get(key) {
        None | Some(Value::Null) => {
            problems.push(FieldError::missing(key, "This object is required."));
            None
        }
        Some(Value::Object(obj)) => Some(obj),
        Some(_) => {
            problems.push(FieldError::invalid(key, "Must be a JSON object."));
            None
        }
    }
}

/// A required string field: absent, `null` and `""` are missing (as in the original
/// service, where any falsy value was), another type is invalid.
fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    key: &str,
    problems: &mut FieldErrors,
) -> Option<&'a str> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            problems.push(FieldError::missing(field, "This field is required."));
            None
        }
        Some(Value::String(s)) if s.is_empty() => {
            problems.push(FieldError::missing(field, "This field is required."));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            problems.push(FieldError::invalid(field, "Must be a string."));
            None
        }
    }
}

/// Checks a `Package` object; on success (no problem pushed) returns its compact JSON.
fn check_package(obj: &Map<String, Value>, problems: &mut FieldErrors) -> Option<String> {
    let before = problems.len();

    let name_field = "Package.package_name";
    if let Some(name) = required_str(obj, name_field, "package_name", problems)
        && let Err(why) = check_package_name(name)
    {
        problems.push(FieldError::invalid(
            name_field,
            format!("Must be a safe file name: it {why}"),
        ));
    }
    let path_field = "Package.path";
    if let Some(path) = required_str(obj, path_field, "path", problems)
        && let Err(why) = check_path(path)
    {
        problems.push(FieldError::invalid(
            path_field,
            format!("Must be a URL or a safe relative path: it {why}"),
        ));
    }
    if obj.contains_key(JOB_ID_KEY) {
        problems.push(FieldError::invalid(
            "Package.job_id",
            "This key is reserved: the server adds job_id.",
        ));
    }

    let json = match serde_json::to_string(obj) {
        Ok(json) => json,
        Err(_) => {
            // Unreachable for a parsed document (string keys, finite numbers); kept as a
            // problem rather than a panic because the map may come from a caller.
            problems.push(FieldError::invalid(
                "Package",
                "Cannot be serialized as JSON.",
            ));
            return None;
        }
    };
    check_size(&json, problems);

    (problems.len() == before).then_some(json)
}

/// The package's compact JSON must fit the limits of one delivery.
fn check_size(json: &str, problems: &mut FieldErrors) {
    if json.len() > MAX_PACKAGE_JSON_BYTES {
        problems.push(FieldError::invalid(
            "Package",
            format!("Must serialize to at most {MAX_PACKAGE_JSON_BYTES} bytes of JSON."),
        ));
    } else if escaped_len(json) + NOTIFICATION_OVERHEAD > MAX_MESSAGE_BYTES {
        // Only reachable when most of the bytes are quotes or backslashes, which double
        // when the `_event` dialect sends the package as a JSON string.
        problems.push(FieldError::invalid(
            "Package",
            "Is too large to deliver to a robot in one 64 KiB message once escaped.",
        ));
    }
}

/// Length of `json` once embedded in a JSON string. Compact serde_json output holds no raw
/// control characters (they are already `\u00XX` escapes), so only `"` and `\` grow.
fn escaped_len(json: &str) -> usize {
    json.len() + json.bytes().filter(|&b| b == b'"' || b == b'\\').count()
}

/// A robot's name as an operator records it (`PUT /api/robots/{address}`): the rules of the
/// trigger's `Robot.robot_name`, reported as the field `robot_name`.
pub fn validate_robot_name(obj: &Map<String, Value>) -> Result<String, FieldErrors> {
    let mut problems = FieldErrors::new();
    match named_robot_field(obj, "robot_name".to_owned(), "robot_name", &mut problems) {
        Some(name) if problems.is_empty() => Ok(name.to_owned()),
        _ => Err(problems),
    }
}

fn robot_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    problems: &mut FieldErrors,
) -> Option<&'a str> {
    named_robot_field(obj, format!("Robot.{key}"), key, problems)
}

fn named_robot_field<'a>(
    obj: &'a Map<String, Value>,
    field: String,
    key: &str,
    problems: &mut FieldErrors,
) -> Option<&'a str> {
    let value = required_str(obj, &field, key, problems)?;
    if exceeds_chars(value, MAX_ROBOT_FIELD_CHARS) {
        problems.push(FieldError::invalid(
            field,
            format!("Must be at most {MAX_ROBOT_FIELD_CHARS} characters."),
        ));
        return None;
    }
    if value.chars().any(is_forbidden_control) {
        problems.push(FieldError::invalid(
            field,
            "Must not contain control characters or line separators.",
        ));
        return None;
    }
    Some(value)
}

#[cfg(test)]
#[path = "trigger_tests.rs"]
mod tests;
