//! The load generator's HTTP clients (`rpa-testkit`'s keep-alive client, one per concurrent
//! client of a scenario) and its `--url` addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};
use rpa_testkit::HttpClient;

/// A connection idle for longer is replaced before the next request: the server closes idle
/// keep-alive connections (its header timeout, 10 s by default), and a request sent just as
/// it does would fail.
const MAX_IDLE: Duration = Duration::from_secs(4);

/// A client for `addr`: its connection replaced when idle, a failed GET tried once more.
pub fn client(addr: SocketAddr) -> HttpClient {
    HttpClient::new(addr).max_idle(MAX_IDLE).retry_get()
}

/// `http://127.0.0.1:4000`, `127.0.0.1:4000/`, `localhost:4000` -> the socket address.
pub fn parse_base_url(url: &str) -> Result<SocketAddr> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .or_else(|| url.trim().strip_prefix("ws://"))
        .unwrap_or(url.trim());
    let authority = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs;
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(SocketAddr::is_ipv4))
        .ok_or_else(|| anyhow!("--url {url}: expected http://HOST:PORT"))
}

/// Answers counted by status (0: no answer: connection error or timeout).
pub type StatusCounts = BTreeMap<u16, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let expected: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(parse_base_url("http://127.0.0.1:4000").unwrap(), expected);
        assert_eq!(parse_base_url("http://127.0.0.1:4000/").unwrap(), expected);
        assert_eq!(parse_base_url("127.0.0.1:4000").unwrap(), expected);
        assert_eq!(parse_base_url("ws://127.0.0.1:4000/ws").unwrap(), expected);
        assert_eq!(
            parse_base_url("http://localhost:4000").unwrap().port(),
            4000
        );
        assert!(parse_base_url("http://127.0.0.1").is_err());
    }
}
