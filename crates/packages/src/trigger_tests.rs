use serde_json::json;

use super::*;
use crate::FieldErrorKind::{self, Invalid, Missing};
use crate::{MAX_NAME_CHARS, MAX_PATH_CHARS};

fn seed() -> Value {
    json!({
        "Package":  { "package_name": "package-x74s-eg", "path": "cloudinary/studioPackages/pkg1-x74s.std" },
        "Robot":    { "robot_name": "LAPTOP-TAUNF8FD", "robot_address": "001AFFDB45C2" },
        "Schedule": { "date": "15-7", "time": "9:00:00" }
    })
}

/// The seed document with `pointer` replaced by `value` (or removed when `value` is `None`).
fn with(pointer: &str, value: Option<Value>) -> Value {
    let mut doc = seed();
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let parent = if parent.is_empty() {
        &mut doc
    } else {
        doc.pointer_mut(parent).unwrap()
    };
    let obj = parent.as_object_mut().unwrap();
    match value {
        Some(v) => {
            obj.insert(key.to_owned(), v);
        }
        None => {
            obj.remove(key);
        }
    }
    doc
}

fn problems_of(doc: &Value) -> Vec<(String, FieldErrorKind)> {
    match validate_trigger(doc) {
        Ok(_) => Vec::new(),
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in &problems {
                assert!(!p.message.is_empty());
            }
            problems.into_iter().map(|p| (p.field, p.kind)).collect()
        }
    }
}

#[test]
fn seed_document_is_accepted() {
    let trigger = validate_trigger(&seed()).unwrap();
    assert_eq!(trigger.package.name(), "package-x74s-eg");
    assert_eq!(
        trigger.package.path(),
        "cloudinary/studioPackages/pkg1-x74s.std"
    );
    assert_eq!(
        trigger.package.to_json(),
        r#"{"package_name":"package-x74s-eg","path":"cloudinary/studioPackages/pkg1-x74s.std"}"#
    );
    assert_eq!(
        trigger.robot,
        RobotRef {
            robot_name: "LAPTOP-TAUNF8FD".to_owned(),
            target: Target::Address("001AFFDB45C2".to_owned()),
        }
    );
    assert_eq!(
        Value::Object(trigger.schedule),
        json!({"date": "15-7", "time": "9:00:00"})
    );
}

#[test]
fn one_problem_per_rule() {
    let long_name = json!("n".repeat(MAX_NAME_CHARS + 1));
    let long_path = json!("p".repeat(MAX_PATH_CHARS + 1));
    let long_robot = json!("r".repeat(crate::MAX_ROBOT_FIELD_CHARS + 1));
    const NAME: &str = "/Package/package_name";
    const PATH: &str = "/Package/path";
    const ROBOT_NAME: &str = "/Robot/robot_name";
    const ADDRESS: &str = "/Robot/robot_address";
    // (where, replacement or None to remove it, expected kind); the problem's field is the
    // pointer written with dots.
    let cases: Vec<(&str, Option<Value>, FieldErrorKind)> = vec![
        ("Package", None, Missing),
        ("Package", Some(Value::Null), Missing),
        ("Package", Some(json!("x")), Invalid),
        ("Package", Some(json!([])), Invalid),
        ("Package", Some(json!(1)), Invalid),
        ("Robot", None, Missing),
        ("Robot", Some(Value::Null), Missing),
        ("Robot", Some(json!(true)), Invalid),
        ("Schedule", None, Missing),
        ("Schedule", Some(Value::Null), Missing),
        ("Schedule", Some(json!("15-7 9:00")), Invalid),
        (NAME, None, Missing),
        (NAME, Some(Value::Null), Missing),
        (NAME, Some(json!("")), Missing),
        (NAME, Some(json!(0)), Invalid),
        (NAME, Some(json!(false)), Invalid),
        (NAME, Some(json!(["a"])), Invalid),
        (NAME, Some(json!("../x")), Invalid),
        (NAME, Some(json!(".hidden")), Invalid),
        (NAME, Some(json!("a b")), Invalid),
        (NAME, Some(long_name), Invalid),
        (PATH, None, Missing),
        (PATH, Some(Value::Null), Missing),
        (PATH, Some(json!("")), Missing),
        (PATH, Some(json!(42)), Invalid),
        (PATH, Some(json!({"url": "x"})), Invalid),
        (PATH, Some(json!("../x")), Invalid),
        (PATH, Some(json!("/etc/passwd")), Invalid),
        (PATH, Some(json!("C:\\x")), Invalid),
        (PATH, Some(json!("a\u{0}b")), Invalid),
        (PATH, Some(long_path), Invalid),
        ("/Package/job_id", Some(json!(7)), Invalid),
        ("/Package/job_id", Some(Value::Null), Invalid),
        (ROBOT_NAME, None, Missing),
        (ROBOT_NAME, Some(Value::Null), Missing),
        (ROBOT_NAME, Some(json!("")), Missing),
        (ROBOT_NAME, Some(json!(12)), Invalid),
        (ROBOT_NAME, Some(json!("a\nb")), Invalid),
        (ROBOT_NAME, Some(json!("a\u{2028}b")), Invalid),
        (ROBOT_NAME, Some(long_robot.clone()), Invalid),
        (ADDRESS, None, Missing),
        (ADDRESS, Some(Value::Null), Missing),
        (ADDRESS, Some(json!("")), Missing),
        (ADDRESS, Some(json!(1234)), Invalid),
        (ADDRESS, Some(json!("00:1A\u{1b}[2J")), Invalid),
        (ADDRESS, Some(long_robot), Invalid),
    ];
    for (pointer, value, kind) in cases {
        let field = pointer.trim_start_matches('/').replace('/', ".");
        let doc = with(pointer, value.clone());
        assert_eq!(
            problems_of(&doc),
            vec![(field, kind)],
            "{pointer} = {value:?}"
        );
    }
}

#[test]
fn whole_document_must_be_an_object() {
    for doc in [json!(null), json!([]), json!("x"), json!(1), json!(true)] {
        assert_eq!(problems_of(&doc), vec![(String::new(), Invalid)], "{doc}");
    }
}

#[test]
fn empty_object_reports_all_three_sections() {
    let problems = validate_trigger(&json!({})).unwrap_err();
    assert!(problems.any_missing());
    assert_eq!(
        problems_of(&json!({})),
        vec![
            ("Package".to_owned(), Missing),
            ("Robot".to_owned(), Missing),
            ("Schedule".to_owned(), Missing),
        ]
    );
}

#[test]
fn every_problem_is_collected_in_document_order() {
    let doc = json!({
        "Package": { "path": "../x", "job_id": 1 },
        "Robot": { "robot_name": 5 },
        "Schedule": []
    });
    assert_eq!(
        problems_of(&doc),
        vec![
            ("Package.package_name".to_owned(), Missing),
            ("Package.path".to_owned(), Invalid),
            ("Package.job_id".to_owned(), Invalid),
            ("Robot.robot_name".to_owned(), Invalid),
            ("Robot.robot_address".to_owned(), Missing),
            ("Schedule".to_owned(), Invalid),
        ]
    );
    let problems = validate_trigger(&doc).unwrap_err();
    assert!(problems.any_missing());
    let only_invalid = with("/Package/path", Some(json!("/abs")));
    assert!(!validate_trigger(&only_invalid).unwrap_err().any_missing());
}

#[test]
fn extra_keys_are_kept_in_order_and_others_ignored() {
    let doc = json!({
        "Comment": "ignored",
        "Package": { "zeta": 1, "package_name": "p", "alpha": {"nested": [1, 2]}, "path": "a/b" },
        "Robot": { "robot_name": "r", "robot_address": "a", "extra": "ignored" },
        "Schedule": {}
    });
    let trigger = validate_trigger(&doc).unwrap();
    let keys: Vec<&str> = trigger
        .package
        .object()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["zeta", "package_name", "alpha", "path"]);
    assert_eq!(
        trigger.package.to_json(),
        r#"{"zeta":1,"package_name":"p","alpha":{"nested":[1,2]},"path":"a/b"}"#
    );
    assert_eq!(trigger.package.as_json(), trigger.package.to_json());
    assert!(trigger.schedule.is_empty());
}

#[test]
fn schedule_content_is_not_checked() {
    let doc = with("Schedule", Some(json!({"date": 15, "bogus": [null]})));
    let trigger = validate_trigger(&doc).unwrap();
    assert_eq!(trigger.schedule.get("date"), Some(&json!(15)));
}

#[test]
fn robot_fields_are_kept_as_received() {
    let doc = with("/Robot/robot_address", Some(json!(" 00:1a:ff:db:45:c2 ")));
    let trigger = validate_trigger(&doc).unwrap();
    assert_eq!(trigger.robot.robot_address(), Some(" 00:1a:ff:db:45:c2 "));
    let max = "r".repeat(crate::MAX_ROBOT_FIELD_CHARS);
    assert!(validate_trigger(&with("/Robot/robot_name", Some(json!(max)))).is_ok());
}

#[test]
fn size_limit_on_the_serialized_package() {
    // `{"package_name":"p","path":"a","pad":""}` is 40 bytes without the padding.
    let overhead = r#"{"package_name":"p","path":"a","pad":""}"#.len();
    let package = |pad: String| json!({"package_name": "p", "path": "a", "pad": pad});
    let fits = with(
        "Package",
        Some(package("x".repeat(MAX_PACKAGE_JSON_BYTES - overhead))),
    );
    let trigger = validate_trigger(&fits).unwrap();
    assert_eq!(trigger.package.to_json().len(), MAX_PACKAGE_JSON_BYTES);
    let over = with(
        "Package",
        Some(package("x".repeat(MAX_PACKAGE_JSON_BYTES - overhead + 1))),
    );
    assert_eq!(problems_of(&over), vec![("Package".to_owned(), Invalid)]);
}

#[test]
fn size_limit_counts_escaping_for_the_event_dialect() {
    // Backslashes serialize as `\\` and double again when the `_event` dialect sends the
    // package as a JSON string, so a package within the byte limit can still overflow a
    // message.
    let package = |k: usize| json!({"package_name": "p", "path": "a", "pad": "\\".repeat(k)});
    let empty_len = serde_json::to_string(&package(0)).unwrap().len();

    let k = (MAX_PACKAGE_JSON_BYTES - empty_len) / 2;
    let doc = with("Package", Some(package(k)));
    let json_len = serde_json::to_string(&doc["Package"]).unwrap().len();
    assert!(json_len <= MAX_PACKAGE_JSON_BYTES);
    assert_eq!(problems_of(&doc), vec![("Package".to_owned(), Invalid)]);

    // A slightly smaller one is accepted and still fits one message once escaped.
    let k = (MAX_PACKAGE_JSON_BYTES - empty_len - 100) / 2;
    let trigger = validate_trigger(&with("Package", Some(package(k)))).unwrap();
    let notification = json!({
        "_event": "notification",
        "value": Value::Object(trigger.package.object_with_job_id(i64::MIN)).to_string(),
    });
    let len = notification.to_string().len();
    assert!(
        len <= MAX_MESSAGE_BYTES && len > MAX_MESSAGE_BYTES - 300,
        "{len}"
    );
}

#[test]
fn from_object_applies_the_same_rules() {
    let obj = seed()["Package"].as_object().unwrap().clone();
    let package = Package::from_object(obj.clone()).unwrap();
    assert_eq!(package.object(), &obj);
    assert_eq!(package.clone().into_object(), obj);

    let mut bad = obj.clone();
    bad.insert("package_name".to_owned(), json!("../../etc/cron.d/x"));
    bad.insert("job_id".to_owned(), json!(3));
    bad.remove("path");
    let problems = Package::from_object(bad).unwrap_err();
    let got: Vec<(&str, FieldErrorKind)> = problems
        .iter()
        .map(|p| (p.field.as_str(), p.kind))
        .collect();
    assert_eq!(
        got,
        [
            ("Package.package_name", Invalid),
            ("Package.path", Missing),
            ("Package.job_id", Invalid),
        ]
    );
}

#[test]
fn job_id_is_appended_for_delivery() {
    let package = validate_trigger(&seed()).unwrap().package;
    let delivered = package.object_with_job_id(21);
    assert_eq!(
        Value::Object(delivered).to_string(),
        r#"{"package_name":"package-x74s-eg","path":"cloudinary/studioPackages/pkg1-x74s.std","job_id":21}"#
    );
}

#[test]
fn messages_do_not_echo_values() {
    let doc = with("/Package/path", Some(json!("../\u{1b}[31mSECRET")));
    let problems = validate_trigger(&doc).unwrap_err();
    assert!(!problems.to_string().contains("SECRET"));
}

#[test]
fn the_package_is_kept_as_its_text_with_numbers_beyond_64_bits() {
    let body = r#"{"Robot": {"robot_name": "R", "robot_address": "A"},
        "Package": { "path": "a/b.std", "package_name": "p",
                     "big": 123456789012345678901234567890, "f": 1.50, "e": "\u00e9 x",
                     "nested": {"k": [1, 2.0e3]} },
        "Schedule": {"at": "2099-01-01T00:00:00Z"}}"#;
    let doc: Value = serde_json::from_str(body).unwrap();
    let trigger = validate_trigger_body(&doc, body.as_bytes()).unwrap();
    assert_eq!(
        trigger.package.as_json(),
        r#"{"path":"a/b.std","package_name":"p","big":123456789012345678901234567890,"f":1.50,"e":"\u00e9 x","nested":{"k":[1,2.0e3]}}"#
    );
    assert_eq!(trigger.package.name(), "p");
}

#[test]
fn a_package_holding_a_key_twice_or_job_id_is_refused() {
    let twice = r#"{"Package": {"package_name": "ok", "path": "a", "package_name": "ok"},
        "Robot": {"robot_name": "R", "robot_address": "A"}, "Schedule": {"at": "x"}}"#;
    let doc: Value = serde_json::from_str(twice).unwrap();
    let problems = problems_of_body(&doc, twice);
    assert_eq!(problems, [("Package".to_owned(), Invalid)]);
    let job_id = r#"{"Package": {"package_name": "ok", "path": "a", "job_id": 5},
        "Robot": {"robot_name": "R", "robot_address": "A"}, "Schedule": {"at": "x"}}"#;
    let doc: Value = serde_json::from_str(job_id).unwrap();
    assert_eq!(
        problems_of_body(&doc, job_id),
        [("Package.job_id".to_owned(), Invalid)]
    );
}

fn problems_of_body(doc: &Value, body: &str) -> Vec<(String, FieldErrorKind)> {
    validate_trigger_body(doc, body.as_bytes())
        .unwrap_err()
        .as_slice()
        .iter()
        .map(|e| (e.field.clone(), e.kind))
        .collect()
}

#[test]
fn a_pool_instead_of_an_address() {
    let doc = json!({
        "Package": {"package_name": "p", "path": "a/b.std"},
        "Robot": {"pool": "finance.night_1"},
        "Schedule": {"date": "15-7", "time": "9:00:00"}
    });
    let trigger = validate_trigger(&doc).unwrap();
    assert_eq!(trigger.robot.pool(), Some("finance.night_1"));
    assert_eq!(trigger.robot.robot_address(), None);
    assert_eq!(trigger.robot.robot_name, "");

    let refused = |robot: Value| {
        let mut doc = doc.clone();
        doc["Robot"] = robot;
        let errors = validate_trigger(&doc).unwrap_err();
        errors.iter().map(|e| e.field.clone()).collect::<Vec<_>>()
    };
    assert_eq!(refused(json!({"pool": "a b"})), ["Robot.pool"]);
    assert_eq!(refused(json!({"pool": ""})), ["Robot.pool"]);
    assert_eq!(refused(json!({"pool": "p".repeat(65)})), ["Robot.pool"]);
    assert_eq!(refused(json!({"pool": 3})), ["Robot.pool"]);
    assert_eq!(
        refused(json!({"pool": "x", "robot_address": "001AFFDB45C2"})),
        ["Robot.pool"]
    );
    assert!(is_valid_pool_name(&"p".repeat(64)));
}
