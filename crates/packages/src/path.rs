//! Rules for `Package.path`: a URL or a relative path that cannot climb out of whatever
//! folder a robot (or anything else) resolves it against.
//!
//! The path is not used to build a file name on the server, but it is delivered to robots,
//! which may join it under their own folder. So it is judged the way the most lenient
//! consumer could read it: percent-decoded (repeatedly), with both `/` and `\` taken as
//! separators. Every decoding stage must pass every rule, so no reading of the string can name
//! a parent folder or a root.
//!
//! Characters are taken from an allow-list rather than folded: printable ASCII, and letters and
//! digits of other scripts, except those with a compatibility form that a normalising consumer
//! (NFKC, Windows "best fit") reads as ASCII: full-width and small forms, super- and
//! subscripts, enclosed and mathematical letters, ligatures, modifier letters. No Unicode
//! punctuation, symbols, marks or invisible characters: a look-alike of `.`, `/`, `\`, `:` or
//! `%` cannot get in, nor anything that could merge with an escape.

use std::borrow::Cow;

use crate::MAX_PATH_CHARS;
use crate::names::{exceeds_chars, is_forbidden_control};

/// Layers of percent-encoding undone before giving up. Legitimate URLs need one; `%25`
/// (an encoded `%`) adds a second; anything deeper is an evasion attempt.
const MAX_DECODE_ROUNDS: usize = 3;

/// Why a `path` was refused; the `Display` text is the client-facing sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathRejection {
    #[error("must be at most {MAX_PATH_CHARS} characters.")]
    TooLong,
    #[error("must not contain NUL, also when percent-encoded.")]
    Nul,
    #[error("must not contain control characters or line separators, also when percent-encoded.")]
    Control,
    #[error(
        "may hold only printable ASCII and letters or digits of other scripts (no look-alikes of ASCII, no Unicode punctuation, symbols or invisible characters), also when percent-encoded."
    )]
    Character,
    #[error("has percent-encoding that does not decode to UTF-8 (such as overlong sequences).")]
    BadEncoding,
    #[error("is percent-encoded more than {MAX_DECODE_ROUNDS} times.")]
    TooManyEncodings,
    #[error("must be relative: it must not start with '/' or '\\'.")]
    Absolute,
    #[error("must not start with a drive letter.")]
    DriveLetter,
    // `~` is expanded to a home folder by shells and many tools, which escapes any base folder.
    #[error("must not start with '~'.")]
    HomeDir,
    #[error("must be a URL of the form scheme://host/... or a relative path.")]
    NotAUrl,
    #[error("is a URL without a host.")]
    NoHost,
    #[error("must not contain a '..' segment, in any spelling.")]
    Traversal,
}

/// Checks a non-empty `path`. Emptiness is the caller's concern (it is reported as missing).
pub(crate) fn check_path(path: &str) -> Result<(), PathRejection> {
    if exceeds_chars(path, MAX_PATH_CHARS) {
        return Err(PathRejection::TooLong);
    }
    let mut form: Cow<'_, str> = Cow::Borrowed(path);
    let mut rounds = 0;
    loop {
        check_form(&form)?;
        match percent_decode(&form)? {
            None => return Ok(()),
            Some(decoded) => {
                rounds += 1;
                if rounds > MAX_DECODE_ROUNDS {
                    return Err(PathRejection::TooManyEncodings);
                }
                form = Cow::Owned(decoded);
            }
        }
    }
}

/// True when `path` is acceptable as a `Package.path`.
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty() && check_path(path).is_ok()
}

/// All rules for one decoding stage of the path.
fn check_form(form: &str) -> Result<(), PathRejection> {
    if form.contains('\0') {
        return Err(PathRejection::Nul);
    }
    if form.chars().any(is_forbidden_control) {
        return Err(PathRejection::Control);
    }
    if !form.chars().all(allowed_char) {
        return Err(PathRejection::Character);
    }
    if let Some((scheme, after_colon)) = split_scheme(form) {
        // `C:` is a drive, not a one-letter scheme; Windows would read `C:x` as a path on C.
        if scheme.len() == 1 {
            return Err(PathRejection::DriveLetter);
        }
        let Some(after_slashes) = strip_two_separators(after_colon) else {
            return Err(PathRejection::NotAUrl);
        };
        let host_end = after_slashes
            .find(['/', '\\', '?', '#'])
            .unwrap_or(after_slashes.len());
        let (authority, rest) = after_slashes.split_at(host_end);
        let host = host_of(authority);
        if host.is_empty() || is_dot_run(host) {
            return Err(PathRejection::NoHost);
        }
        // A consumer that does not know URLs reads the authority as a path segment: `..;:x`
        // names `..` there, even if its host `..;` is not a dot run.
        check_segments(authority)?;
        check_segments(rest)
    } else {
        if form.starts_with(['/', '\\']) {
            return Err(PathRejection::Absolute);
        }
        if form.starts_with('~') {
            return Err(PathRejection::HomeDir);
        }
        check_segments(form)
    }
}

fn check_segments(path: &str) -> Result<(), PathRejection> {
    for segment in path.split(['/', '\\']) {
        // What a segment names ends at the first `:` (NTFS reads `..::$DATA` as `..` plus a
        // stream), `;` (Java servers read `..;x` as `..` plus a path parameter), and `?` or
        // `#` (URL resolution reads `..?x` as `..` plus a query).
        let name = segment
            .split([':', ';', '?', '#'])
            .next()
            .unwrap_or(segment);
        if is_dot_run(name) {
            return Err(PathRejection::Traversal);
        }
    }
    Ok(())
}

/// `..`, and also `...`, `.. `, `. .`: Windows strips trailing dots and spaces from a
/// segment, so any run of only dots and spaces with two or more dots may end up as `..`.
/// A single `.` (the folder itself) is harmless and allowed.
fn is_dot_run(segment: &str) -> bool {
    segment.chars().all(|c| c == '.' || c.is_whitespace())
        && segment.bytes().filter(|&b| b == b'.').count() >= 2
}

/// `scheme:` at the start (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`), returning
/// the scheme and what follows the colon.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    Some((scheme, &s[colon + 1..]))
}

/// Browsers read `http:\\host` like `http://host`, so either separator counts here too.
fn strip_two_separators(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    let is_sep = |b: Option<&u8>| matches!(b, Some(b'/' | b'\\'));
    (is_sep(bytes.first()) && is_sep(bytes.get(1))).then(|| &s[2..])
}

/// One round of percent-decoding. `None` when there was nothing to decode, so the caller
/// knows the form is stable. A `%` not followed by two hex digits stays literal, as URL
/// parsers leave it. The non-standard `%uXXXX` form (IIS) is decoded too, since a lenient
/// consumer could.
fn percent_decode(s: &str) -> Result<Option<String>, PathRejection> {
    if !s.contains('%') {
        return Ok(None);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(byte) = hex_number(bytes.get(i + 1..i + 3)) {
                out.push(byte as u8);
                changed = true;
                i += 3;
                continue;
            }
            if matches!(bytes.get(i + 1), Some(b'u' | b'U'))
                && let Some(code) = hex_number(bytes.get(i + 2..i + 6))
            {
                // A surrogate is no character: refused like any other bad encoding.
                let c = char::from_u32(code).ok_or(PathRejection::BadEncoding)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                changed = true;
                i += 6;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    if !changed {
        return Ok(None);
    }
    // Overlong forms such as `%c0%ae` decode to a `.` in lax decoders; refusing anything
    // that is not strict UTF-8 closes that door without enumerating the forms.
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| PathRejection::BadEncoding)
}

/// The value of a run of hex digits (all of `digits` must be hex), `None` otherwise or when
/// the input ended early.
fn hex_number(digits: Option<&[u8]>) -> Option<u32> {
    digits?.iter().try_fold(0u32, |acc, &b| {
        let digit = (b as char).to_digit(16)?;
        Some((acc << 4) | digit)
    })
}

/// The host of an authority: without `user:password@` and without `:port` (an IPv6 literal
/// keeps its brackets). `http://..:80/x` has the host `..`.
fn host_of(authority: &str) -> &str {
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, after)| after);
    if host_and_port.starts_with('[') {
        return host_and_port
            .find(']')
            .map_or(host_and_port, |end| &host_and_port[..=end]);
    }
    host_and_port
        .split_once(':')
        .map_or(host_and_port, |(host, _)| host)
}

/// The character allow-list (see the module documentation).
fn allowed_char(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    c.is_alphanumeric() && !has_ascii_compatibility_form(c)
}

/// Letters and digits whose compatibility form (NFKC) holds ASCII: a `%` followed by them could
/// read as an escape, some spell drive letters or dots, and a normalising consumer (or
/// Windows' "best fit") reads them as what they look like. Decided by Unicode's own tables
/// rather than a list of blocks, which misses some (`ꟳ`, U+A7F3, is `F`).
fn has_ascii_compatibility_form(c: char) -> bool {
    use unicode_normalization::UnicodeNormalization as _;
    std::iter::once(c).nfkc().any(|folded| folded.is_ascii())
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
