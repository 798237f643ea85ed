//! Where webhook deliveries may go. A webhook makes the server send requests wherever its creator
//! points it, so every address a URL resolves to is checked before each connection: link-local
//! ranges and the cloud metadata addresses are always refused (they hand out credentials), and
//! `--webhook-deny` adds ranges (e.g. the private ones, when all receivers are public).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Ranges refused whatever the settings: link-local (where 169.254.169.254 answers on most
/// clouds) and the metadata addresses outside it.
const ALWAYS: [&str; 4] = [
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
];

/// The refused ranges.
#[derive(Debug, Clone)]
pub(crate) struct AddressPolicy {
    denied: Vec<IpNet>,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        AddressPolicy::new(Vec::new())
    }
}

impl AddressPolicy {
    /// The ranges always refused plus `extra`.
    pub(crate) fn new(extra: Vec<IpNet>) -> AddressPolicy {
        let mut denied: Vec<IpNet> = ALWAYS
            .iter()
            .filter_map(|range| range.parse().ok())
            .collect();
        denied.extend(extra.into_iter().map(|net| net.trunc()));
        AddressPolicy { denied }
    }

    /// True when a connection to `ip` may be made.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !self.denied.iter().any(|net| net.contains(&ip))
    }
}

/// The address a connection really reaches: IPv4-mapped IPv6 is the IPv4 address, and the
/// unspecified addresses reach this host (Linux connects `0.0.0.0` and `::` to loopback).
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => canonical(IpAddr::V4(v4)),
            None if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            None => IpAddr::V6(v6),
        },
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(v4) => IpAddr::V4(v4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_addresses_are_always_refused() {
        let policy = AddressPolicy::default();
        for refused in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
        ] {
            assert!(!policy.allows(ip(refused)), "{refused}");
        }
        for allowed in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "::1",
            "8.8.8.8",
            "0.0.0.0",
        ] {
            assert!(policy.allows(ip(allowed)), "{allowed}");
        }
    }

    #[test]
    fn denied_ranges_are_checked_after_normalising() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(!policy.allows(ip("127.0.0.1")));
        assert!(!policy.allows(ip("::ffff:127.0.0.1")));
        assert!(!policy.allows(ip("0.0.0.0")));
        assert!(policy.allows(ip("::1")));
        let policy = AddressPolicy::new(vec!["::1/128".parse().unwrap()]);
        assert!(!policy.allows(ip("::")));
    }
}
