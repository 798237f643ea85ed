//! Robot credential tokens: `rbt_` + 32 random bytes in unpadded URL-safe base64 (43
//! characters), so a token goes into a robot's `?token=` as it is, with no escaping. The server
//! keeps only the SHA-256 of a token: the database holds no secret a reader could use, and an
//! upgrade request is looked up by the hash of what it presents. A token of 256 random bits
//! needs no slow hash (there is nothing to guess from its hash), and looking it up by its hash
//! tells no timing about the stored tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "rbt_";
const RANDOM_BYTES: usize = 32;
/// Characters of the random part: 32 bytes in unpadded base64.
const RANDOM_CHARS: usize = 43;

/// The system's random source failed: no token can be made.
#[derive(Debug, thiserror::Error)]
#[error("no random bytes could be had from the system")]
pub(crate) struct NoRandom;

/// A new token, shown once to whoever enrols the robot.
pub(crate) fn generate() -> Result<String, NoRandom> {
    let mut bytes = [0u8; RANDOM_BYTES];
    SystemRandom::new().fill(&mut bytes).map_err(|_| NoRandom)?;
    Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Whether `text` has the shape of a credential token (it may still be unknown).
pub(crate) fn is_shaped(text: &str) -> bool {
    text.strip_prefix(PREFIX).is_some_and(|random| {
        random.len() == RANDOM_CHARS
            && random
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What the database stores of a token and looks it up by: its SHA-256, in lower-case hex.
pub(crate) fn hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), PREFIX.len() + RANDOM_CHARS);
        assert!(is_shaped(&a) && is_shaped(&b), "{a}");
        assert_eq!(crate::http::percent::decode(&a, true), a);
    }

    #[test]
    fn shapes() {
        let good = format!("rbt_{}", "A".repeat(43));
        assert!(is_shaped(&good));
        for bad in [
            "rbt_".to_owned(),
            format!("rbt_{}", "A".repeat(42)),
            format!("rbt_{}", "A".repeat(44)),
            format!("rbt_{}=", "A".repeat(42)),
            format!("rbt_{}+", "A".repeat(42)),
            format!("xyz_{}", "A".repeat(43)),
            "robot-secret".to_owned(),
        ] {
            assert!(!is_shaped(&bad), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_sha256_in_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
