use serde::{Deserialize, Deserializer, Serialize};

/// A robot's identity: its `robotAddress`.
///
/// A MAC address is normalised to 12 upper-case hex digits, so `00:1a:ff:db:45:c2`,
/// `00-1A-FF-DB-45-C2` and `001affdb45c2` are the same robot `001AFFDB45C2`. Accepted MAC
/// spellings are 12 hex digits, or six hex pairs joined by one separator used throughout
/// (`:` or `-`). Anything else (old robots sent free text) is kept exactly as received,
/// white space included: guessing at a near-MAC could merge two distinct robots.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RobotAddress(String);

const MAC_DIGITS: usize = 12;
const SEPARATED_MAC_LEN: usize = 17;

impl RobotAddress {
    pub fn new(raw: &str) -> RobotAddress {
        RobotAddress(normalised_mac(raw).unwrap_or_else(|| raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the address is a (normalised) MAC rather than free text.
    pub fn is_mac(&self) -> bool {
        self.0.len() == MAC_DIGITS
            && self
                .0
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'A'..=b'F').contains(&byte))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn normalised_mac(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let digits: Vec<u8> = match bytes.len() {
        MAC_DIGITS => bytes.to_vec(),
        SEPARATED_MAC_LEN => {
            let separator = *bytes.get(2)?;
            if separator != b':' && separator != b'-' {
                return None;
            }
            let mut digits = Vec::with_capacity(MAC_DIGITS);
            for (index, &byte) in bytes.iter().enumerate() {
                if index % 3 == 2 {
                    if byte != separator {
                        return None;
                    }
                } else {
                    digits.push(byte);
                }
            }
            digits
        }
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(
        digits
            .iter()
            .map(|byte| char::from(byte.to_ascii_uppercase()))
            .collect(),
    )
}

impl std::fmt::Display for RobotAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RobotAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Deserialising normalises, so a stored or configured address compares equal to the one a
/// robot announces.
impl<'de> Deserialize<'de> for RobotAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Ok(RobotAddress::new(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_spellings_normalise() {
        for raw in [
            "00:1a:ff:db:45:c2",
            "00-1A-FF-DB-45-C2",
            "001affdb45c2",
            "001AFFDB45C2",
            "00:1A:fF:Db:45:C2",
        ] {
            let address = RobotAddress::new(raw);
            assert_eq!(address.as_str(), "001AFFDB45C2", "{raw}");
            assert!(address.is_mac());
        }
    }

    #[test]
    fn anything_else_is_kept_as_received() {
        for raw in [
            "00:1a:ff-db:45:c2",   // mixed separators
            "00:1a:ff:db:45",      // too short
            "00:1a:ff:db:45:c2:0", // too long
            "001affdb45c",         // 11 digits
            "001affdb45c2a",       // 13 digits
            "001affdb45g2",        // not hex
            "00.1a.ff.db.45.c2",   // other separator
            "001:aff:db4:5c2",     // separators in the wrong places
            " 001affdb45c2",       // surrounding white space
            "0:01a:ff:db:45:c2",   // right length, wrong grouping
            "My Robot",
            "",
            "ééééééé:",
        ] {
            let address = RobotAddress::new(raw);
            assert_eq!(address.as_str(), raw);
            assert!(!address.is_mac(), "{raw}");
        }
    }

    #[test]
    fn multibyte_text_of_mac_length_is_not_a_mac() {
        // 12 bytes but 6 characters: the byte-length check must not misread it.
        let raw = "éééééé";
        assert_eq!(raw.len(), 12);
        assert_eq!(RobotAddress::new(raw).as_str(), raw);
    }

    #[test]
    fn conversions() {
        let address = RobotAddress::new("00-1a-ff-db-45-c2");
        assert_eq!(address.to_string(), "001AFFDB45C2");
        assert_eq!(address.as_ref(), "001AFFDB45C2");
        assert_eq!(address.clone().into_string(), "001AFFDB45C2");
        assert_eq!(serde_json::to_string(&address).unwrap(), "\"001AFFDB45C2\"");
        let parsed: RobotAddress = serde_json::from_str("\"00:1a:ff:db:45:c2\"").unwrap();
        assert_eq!(parsed, address);
    }
}
