//! Percent-decoding of path segments and query values (warp hands both over as written), and
//! the encoding of a path segment the server writes (a `Location`).

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in query strings). A
/// malformed escape is kept as written; bytes that are not UTF-8 become U+FFFD.
pub(crate) fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make at most 255.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` as one path segment: every byte but the unreserved ones (RFC 3986) escaped.
pub(crate) fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{decode, encode_segment};

    #[test]
    fn a_segment_is_encoded_so_that_it_decodes_back() {
        assert_eq!(encode_segment("001AFFDB45C2"), "001AFFDB45C2");
        assert_eq!(encode_segment("a b/c?é"), "a%20b%2Fc%3F%C3%A9");
        for text in ["free text", "..", "x%y", "ü\n"] {
            assert_eq!(decode(&encode_segment(text), false), text);
        }
    }

    #[test]
    fn escapes_plus_and_malformed_input() {
        assert_eq!(decode("00%3A1a", false), "00:1a");
        assert_eq!(decode("a+b%20c", true), "a b c");
        assert_eq!(decode("a+b", false), "a+b");
        assert_eq!(decode("bad%zz%4", false), "bad%zz%4");
        assert_eq!(decode("%ff", false), "\u{fffd}");
    }
}
