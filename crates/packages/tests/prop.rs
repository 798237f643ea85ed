#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Property tests: the validator never panics, and no accepted path can climb out of the
//! folder it is joined under, however a consumer decodes it.

use std::path::{Component, Path, PathBuf};

use proptest::prelude::*;
use rpa_packages::{PackageDir, is_safe_package_name, validate_trigger};
use serde_json::{Map, Value, json};

/// Pieces that, combined, spell most known traversal tricks.
const FRAGMENTS: &[&str] = &[
    "..", ".", "a", "b.std", "/", "\\", "%2e", "%2E", "%2f", "%2F", "%5c", "%25", "%32", "%65",
    "%c0", "%ae", "%af", "%00", "%20", "%", "\u{ff0e}", "\u{ff0f}", "\u{ff3c}", "\u{2024}",
    "\u{fe52}", "\u{2025}", "\u{200b}", "\u{a5}", " ", ":", "C", "https://", "host", "~", "?", "#",
    "\u{e9}", "::$DATA", ";", "%u002e", "%u2215",
];

fn fragment_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 1..12).prop_map(|parts| parts.concat())
}

fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => fragment_path(),
        1 => "\\PC{0,40}",
        1 => ".{0,40}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&[
            "Package", "Robot", "Schedule", "package_name", "path", "robot_name",
            "robot_address", "job_id", "date",
        ][..])
        .prop_map(str::to_owned),
        1 => ".{0,8}",
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any_path().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A document of the right shape whose strings come from hostile generators.
fn shaped_trigger() -> impl Strategy<Value = Value> {
    (
        prop_oneof![any_path(), "[A-Za-z0-9._-]{0,12}"],
        any_path(),
        any_json(),
    )
        .prop_map(|(name, path, extra)| {
            json!({
                "Package": {"package_name": name, "path": path, "extra": extra},
                "Robot": {"robot_name": "r", "robot_address": "001AFFDB45C2"},
                "Schedule": {}
            })
        })
}

/// Every way a lenient consumer might read `path`: as is, and after each round of
/// percent-decoding (lossy), with full-width and other look-alike characters folded.
/// Written independently of the validator on purpose.
fn readings(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = path.to_owned();
    for _ in 0..6 {
        out.push(fold(&current));
        let next = decode_lossy(&current);
        if next == current {
            break;
        }
        current = next;
    }
    out
}

fn decode_lossy(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|&c| (c as char).to_digit(16));
        if let (b'%', Some(hi), Some(lo)) = (b[i], hex(i + 1), hex(i + 2)) {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        let wide = (2..6).try_fold(0, |acc, j| Some(acc * 16 + hex(i + j)?));
        if let (b'%', Some(b'u' | b'U'), Some(code)) = (b[i], b.get(i + 1), wide) {
            let c = char::from_u32(code).unwrap_or('\u{fffd}');
            out.extend_from_slice(c.to_string().as_bytes());
            i += 6;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '\u{200b}'..='\u{200f}' | '\u{feff}' | '\u{ad}'))
        .map(|c| match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap(),
            '\u{2024}' | '\u{fe52}' | '\u{3002}' | '\u{ff61}' => '.',
            '\u{a5}' | '\u{20a9}' | '\u{2216}' => '/',
            '\\' => '/',
            c => c,
        })
        .collect::<String>()
        .replace('\u{2025}', "..")
}

/// Joins a reading under `base` and resolves it lexically, treating any segment of only
/// dots and spaces with two or more dots as `..` (Windows trims trailing dots and spaces)
/// and anything after an NTFS `:` as a stream name.
fn resolve_under(base: &Path, reading: &str) -> PathBuf {
    let relative = match reading.split_once("://") {
        Some((scheme, rest)) if !scheme.contains('/') => rest
            .find('/')
            .map_or("", |i| &rest[i..])
            .trim_start_matches('/'),
        _ => reading,
    };
    let joined = base.join(relative);
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(seg) => {
                let seg = seg.to_string_lossy();
                let head = seg.split([':', ';', '?', '#']).next().unwrap_or("");
                let dots = head.matches('.').count();
                if dots >= 2 && head.chars().all(|c| c == '.' || c.is_whitespace()) {
                    out.pop();
                } else {
                    out.push(&*seg);
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_json(doc in any_json()) {
        let _ = validate_trigger(&doc);
    }

    #[test]
    fn accepted_packages_stay_inside_the_folder(doc in shaped_trigger()) {
        let base = Path::new("/srv/robot/packages");
        match validate_trigger(&doc) {
            Err(problems) => prop_assert!(!problems.is_empty()),
            Ok(trigger) => {
                let name = trigger.package.name();
                prop_assert!(is_safe_package_name(name));
                let file = base.join(PackageDir::file_name(name, 1));
                prop_assert_eq!(file.parent(), Some(base));
                for reading in readings(trigger.package.path()) {
                    let resolved = resolve_under(base, &reading);
                    prop_assert!(
                        resolved.starts_with(base),
                        "{:?} read as {:?} resolves to {:?}",
                        trigger.package.path(), reading, resolved
                    );
                }
            }
        }
    }
}

#[test]
fn the_checker_itself_catches_escapes() {
    let base = Path::new("/srv/robot/packages");
    for escaping in [
        "../x",
        "a/../../x",
        "/etc",
        "%2e%2e/x",
        "\u{ff0e}\u{ff0e}/x",
        "a\\..\\..\\x",
    ] {
        let escapes = readings(escaping)
            .iter()
            .any(|r| !resolve_under(base, r).starts_with(base));
        assert!(escapes, "{escaping:?}");
    }
}

/// Guards against a vacuous property: the hostile generator must also produce documents
/// that are accepted, or `accepted_packages_stay_inside_the_folder` proves nothing.
#[test]
fn the_generator_produces_accepted_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = shaped_trigger();
    let total = 2000;
    let accepted = (0..total)
        .filter(|_| {
            let doc = strategy.new_tree(&mut runner).unwrap().current();
            validate_trigger(&doc).is_ok()
        })
        .count();
    assert!(accepted * 20 > total, "only {accepted} of {total} accepted");
    assert!(accepted * 20 < total * 19, "{accepted} of {total} accepted");
}
