//! Fuzz target `trigger`: the job trigger validator and its path and name rules.
//!
//! One input is used three ways:
//! 1. parsed as JSON (skipped when it is not JSON) and given to `validate_trigger`;
//! 2. as a raw string, to `is_safe_path` and `is_safe_package_name`;
//! 3. as a raw string placed in an otherwise valid trigger, as `Package.path` and as
//!    `Package.package_name`, so that the fuzzer's strings reach the full validator.
//!
//! Properties (beyond "no panic"):
//! - an accepted trigger's name and path pass `is_safe_package_name` / `is_safe_path`, it has
//!   no `job_id`, its JSON is within `MAX_PACKAGE_JSON_BYTES`, its robot fields are within the
//!   documented rules, and `Package::from_object` accepts its package unchanged;
//! - a rejected trigger reports at least one problem;
//! - `validate_trigger` accepts a path (or name) in an otherwise valid trigger exactly when
//!   `is_safe_path` (or `is_safe_package_name`) does;
//! - `is_safe_package_name` is exactly the documented rule (1-128 of `A-Za-z0-9._-`, no
//!   leading `.`);
//! - no accepted path has a `..` segment (in any spelling the crate documents: dots and
//!   spaces with two or more dots), a leading `/` or `\`, or a control character, in any
//!   reading of it: percent-decoded (`%XX` and `%uXXXX`) any number of times, NFKC-normalised
//!   (an independent model of "look-alike" folding), with the crate's documented extra
//!   look-alikes folded, in any order of these steps (see `readings`).

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use rpa_packages::{
    MAX_NAME_CHARS, MAX_PACKAGE_JSON_BYTES, MAX_PATH_CHARS, MAX_POOL_CHARS, MAX_ROBOT_FIELD_CHARS,
    Package, Target, is_safe_package_name, is_safe_path, is_valid_pool_name, validate_trigger,
};
use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(doc) = serde_json::from_str::<Value>(text) {
        check_document(&doc);
    }
    check_raw_string(text);
});

fn check_document(doc: &Value) {
    match validate_trigger(doc) {
        Ok(trigger) => {
            let package = &trigger.package;
            assert!(is_safe_package_name(package.name()), "{:?}", package.name());
            assert!(is_safe_path(package.path()), "{:?}", package.path());
            check_path_readings(package.path());
            assert!(!package.object().contains_key("job_id"));
            assert!(package.as_json().len() <= MAX_PACKAGE_JSON_BYTES);
            assert_eq!(
                serde_json::to_string(package.object()).ok().as_deref(),
                Some(package.as_json())
            );
            let robot = &trigger.robot;
            match &robot.target {
                Target::Address(address) => {
                    // Both fields are required for a single robot.
                    for field in [&robot.robot_name, address] {
                        assert!(!field.is_empty());
                        check_robot_field(field);
                    }
                }
                Target::Pool(pool) => {
                    // The name is optional for a pool (then empty); the pool name is strict.
                    check_robot_field(&robot.robot_name);
                    assert!(is_valid_pool_name(pool), "{pool:?}");
                    assert!(pool.len() <= MAX_POOL_CHARS);
                }
            }
            let again = Package::from_object(package.object().clone());
            assert_eq!(again.as_ref(), Ok(package), "from_object disagrees");
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "rejected without a problem");
            for problem in problems.iter() {
                assert!(!problem.message.is_empty());
            }
        }
    }
}

fn check_robot_field(field: &str) {
    assert!(field.chars().count() <= MAX_ROBOT_FIELD_CHARS);
    assert!(!field.chars().any(is_control_or_separator), "{field:?}");
}

fn check_raw_string(text: &str) {
    let safe_path = is_safe_path(text);
    if safe_path {
        assert!(text.chars().count() <= MAX_PATH_CHARS);
        check_path_readings(text);
    }
    let safe_name = is_safe_package_name(text);
    assert_eq!(
        safe_name,
        documented_name_rule(text),
        "name rule for {text:?}"
    );

    // The same strings through the whole validator.
    let with_path = shaped("package-x74s-eg", text);
    assert_eq!(
        validate_trigger(&with_path).is_ok(),
        safe_path,
        "validate_trigger and is_safe_path disagree on {text:?}"
    );
    check_document(&with_path);
    let with_name = shaped(text, "cloudinary/studioPackages/pkg1-x74s.std");
    assert_eq!(
        validate_trigger(&with_name).is_ok(),
        safe_name,
        "validate_trigger and is_safe_package_name disagree on {text:?}"
    );
}

fn shaped(name: &str, path: &str) -> Value {
    json!({
        "Package": {"package_name": name, "path": path, "extra": {"k": [1, "v"]}},
        "Robot": {"robot_name": "LAPTOP-TAUNF8FD", "robot_address": "001AFFDB45C2"},
        "Schedule": {"date": "15-7", "time": "9:00:00"}
    })
}

/// The README's rule, written independently of the crate.
fn documented_name_rule(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_control_or_separator(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Checks every reading of an accepted path.
fn check_path_readings(path: &str) {
    for reading in readings(path) {
        if let Some(why) = violation(&reading) {
            panic!("accepted path {path:?} can be read as {reading:?}, which {why}");
        }
    }
}

/// What a reading must not be or hold, or `None` when it is harmless.
fn violation(reading: &str) -> Option<&'static str> {
    if reading.chars().any(is_control_or_separator) {
        return Some("holds a control character or line separator");
    }
    if reading.starts_with(['/', '\\']) {
        return Some("is absolute");
    }
    for segment in reading.split(['/', '\\']) {
        // What a segment names ends at `:` (NTFS streams), `;` (path parameters), `?` and
        // `#` (query, fragment): the crate documents the same reading.
        let name = segment.split([':', ';', '?', '#']).next().unwrap_or("");
        let dots = name.chars().filter(|&c| c == '.').count();
        if dots >= 2 && name.chars().all(|c| c == '.' || c.is_whitespace()) {
            return Some("has a `..` segment");
        }
    }
    None
}

/// Most distinct readings explored per path; the input is at most a few KiB, so this bounds
/// the work per execution.
const MAX_READINGS: usize = 64;
/// Longest chain of steps from the path to a reading.
const MAX_STEPS: usize = 6;

/// Every string reachable from `path` in at most `MAX_STEPS` steps, each step one of: one
/// round of percent-decoding, NFKC normalisation, the crate's documented look-alike folding.
fn readings(path: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    seen.insert(path.to_owned());
    let mut frontier = vec![path.to_owned()];
    for _ in 0..MAX_STEPS {
        let mut next = Vec::new();
        for form in &frontier {
            for step in [percent_decode_lossy, nfkc, documented_fold] {
                let read = step(form);
                if seen.len() < MAX_READINGS && !seen.contains(&read) {
                    seen.insert(read.clone());
                    next.push(read);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    seen
}

/// One round of `%XX` and `%uXXXX` decoding; bytes that are not UTF-8 become U+FFFD.
fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |i: usize| bytes.get(i).and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            if matches!(bytes.get(i + 1), Some(b'u' | b'U'))
                && let Some(code) = (2..6).try_fold(0u32, |acc, j| Some(acc * 16 + hex(i + j)?))
            {
                let c = char::from_u32(code).unwrap_or('\u{fffd}');
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i += 6;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn nfkc(s: &str) -> String {
    s.nfkc().collect()
}

/// The look-alikes the crate's README names beyond NFKC: currency signs that Windows code
/// pages show as `\`, mathematical slashes and colons, and invisible format characters.
fn documented_fold(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '\u{a5}' | '\u{20a9}' | '\u{2216}' | '\u{29f5}' | '\u{29f9}' => Some('\\'),
            '\u{2215}' | '\u{2044}' | '\u{29f8}' => Some('/'),
            '\u{2236}' | '\u{a789}' => Some(':'),
            '\u{ff61}' | '\u{3002}' => Some('.'),
            c if is_invisible(c) => None,
            c => Some(c),
        })
        .collect()
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}'
        | '\u{fe00}'..='\u{fe0f}' | '\u{feff}')
}
