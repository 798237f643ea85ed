//! Rules for the strings that name things: `package_name` (it becomes a file name on the
//! server) and the free-text robot fields.

use crate::MAX_NAME_CHARS;

/// Why a `package_name` was refused; the `Display` text is the client-facing sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameRejection {
    #[error("must be at most {MAX_NAME_CHARS} characters.")]
    TooLong,
    #[error("may only contain letters, digits, '.', '_' and '-'.")]
    BadCharacter,
    // A leading dot would make the file hidden and would let `.` and `..` through; the
    // folder's temporary files are the only dot files, so they can never collide.
    #[error("must not start with '.'.")]
    LeadingDot,
}

/// Checks a non-empty `package_name`. Emptiness is the caller's concern because it is
/// reported as missing, not invalid.
pub(crate) fn check_package_name(name: &str) -> Result<(), NameRejection> {
    // ASCII-only, so bytes are characters; checking the alphabet first keeps a huge
    // non-ASCII name from being counted character by character.
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(NameRejection::BadCharacter);
    }
    if name.len() > MAX_NAME_CHARS {
        return Err(NameRejection::TooLong);
    }
    if name.starts_with('.') {
        return Err(NameRejection::LeadingDot);
    }
    Ok(())
}

/// True when `name` may be used as a `package_name` (and so as part of a file name).
pub fn is_safe_package_name(name: &str) -> bool {
    !name.is_empty() && check_package_name(name).is_ok()
}

/// Characters refused in every text field: C0/C1 controls and the Unicode line and paragraph
/// separators, which JavaScript and some log viewers treat as line breaks.
pub(crate) fn is_forbidden_control(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Length in characters, stopping early once past `limit` so an oversized string is not
/// walked to its end.
pub(crate) fn exceeds_chars(s: &str, limit: usize) -> bool {
    s.len() > limit && s.chars().nth(limit).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_names() {
        for name in [
            "package-x74s-eg",
            "a",
            "A.b_c-d",
            "pkg..v2",
            "-leading-dash",
            "_",
            "x.",
            "0",
            &"n".repeat(MAX_NAME_CHARS),
        ] {
            assert_eq!(check_package_name(name), Ok(()), "{name:?}");
            assert!(is_safe_package_name(name));
        }
    }

    #[test]
    fn refused_names() {
        use NameRejection::*;
        let too_long = "n".repeat(MAX_NAME_CHARS + 1);
        let cases: &[(&str, NameRejection)] = &[
            (".", LeadingDot),
            ("..", LeadingDot),
            (".hidden", LeadingDot),
            ("a/b", BadCharacter),
            ("a\\b", BadCharacter),
            ("../etc", BadCharacter),
            ("a b", BadCharacter),
            ("a\0b", BadCharacter),
            ("a\nb", BadCharacter),
            ("caf\u{e9}", BadCharacter),
            ("\u{ff0e}\u{ff0e}", BadCharacter),
            ("a%2e", BadCharacter),
            ("C:x", BadCharacter),
            ("a*", BadCharacter),
            (&too_long, TooLong),
        ];
        for (name, why) in cases {
            assert_eq!(check_package_name(name), Err(*why), "{name:?}");
            assert!(!is_safe_package_name(name));
        }
        assert!(!is_safe_package_name(""));
    }

    #[test]
    fn controls() {
        for c in [
            '\0', '\n', '\r', '\t', '\u{1b}', '\u{7f}', '\u{85}', '\u{2028}', '\u{2029}',
        ] {
            assert!(is_forbidden_control(c), "{c:?}");
        }
        for c in ['a', ' ', '\u{e9}', '\u{ff0e}'] {
            assert!(!is_forbidden_control(c), "{c:?}");
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(!exceeds_chars("\u{e9}\u{e9}", 2));
        assert!(exceeds_chars("abc", 2));
        assert!(!exceeds_chars("ab", 2));
    }
}
