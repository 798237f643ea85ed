//! `socket-server --healthcheck`: asks a running server for `/healthz`, for container health
//! checks (a slim image has no curl).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

pub(crate) fn check(listen: SocketAddr) -> ExitCode {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(match target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    match ask(target) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("socket-server: {target} answered /healthz with an error");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("socket-server: {target} does not answer: {error}");
            ExitCode::FAILURE
        }
    }
}

fn ask(target: SocketAddr) -> std::io::Result<bool> {
    let limit = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&target, limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 32];
    let read = stream.read(&mut head)?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    Ok(status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200"))
}
