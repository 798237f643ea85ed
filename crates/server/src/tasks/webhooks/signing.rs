//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the bytes of a `whsec_` secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "whsec_";

/// A webhook's signing key. Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a secret given in a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    #[error("must start with \"whsec_\"")]
    Prefix,
    #[error("the part after \"whsec_\" must be base64")]
    Encoding,
    #[error("must hold 24 to 64 bytes (32 recommended)")]
    Length,
}

impl Secret {
    /// 32 random bytes from the operating system.
    pub(crate) fn generate() -> Result<Secret, ring::error::Unspecified> {
        let mut key = vec![0_u8; 32];
        SystemRandom::new().fill(&mut key)?;
        Ok(Secret { key })
    }

    /// Reads `whsec_` + base64 (padded or not), as Standard Webhooks libraries write it.
    pub(crate) fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| SecretError::Encoding)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Length);
        }
        Ok(Secret { key })
    }

    /// The form shown once at creation and stored.
    pub(crate) fn to_text(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The `webhook-signature` header value for one attempt.
    pub(crate) fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
        let mut context = hmac::Context::with_key(&key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn signs_like_the_reference_libraries() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_malformed_secrets() {
        assert_eq!(Secret::parse("MfKQ9r8GKYqrTwjU"), Err(SecretError::Prefix));
        assert_eq!(Secret::parse("whsec_!!!"), Err(SecretError::Encoding));
        assert_eq!(Secret::parse("whsec_AAAA"), Err(SecretError::Length));
        let generated = Secret::generate().unwrap();
        assert_eq!(Secret::parse(&generated.to_text()).unwrap(), generated);
        assert!(!format!("{generated:?}").contains(&generated.to_text()[6..]));
    }
}
