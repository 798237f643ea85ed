//! `socket-server --healthcheck`: asks a running server for `/healthz`, for container health
//! checks (a slim image has no curl).
//!
//! A container's health check is a process of its own: it gets the container's environment but
//! not the server's arguments, so `image --listen 0.0.0.0:5000` would be probed on the default
//! port. Unless the check is given `--listen` itself, it therefore looks for the server, the
//! container's first process or else the only other process running this executable, and finds
//! the server's address the way the server did: its `--listen` argument, then its
//! `SOCKET_SERVER_LISTEN`, then its `PORT`, then `0.0.0.0:4000`. A server it cannot see (none,
//! several, another user's) leaves the check's own settings, resolved the same way.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::CommandFactory as _;
use clap::parser::ValueSource;

/// The server's own default (cli.rs), when neither its arguments nor its environment name one.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 4000);

/// `own`: the address the check's own flags and environment give, resolved as the server's are.
pub(crate) fn check(own: SocketAddr) -> ExitCode {
    let listen = if listen_argument(std::env::args_os()).is_some() {
        own
    } else {
        server_listen(Path::new("/proc")).unwrap_or(own)
    };
    let target = probe_address(listen);
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

/// Where to connect to reach a server listening on `listen`: loopback for a wildcard address.
fn probe_address(listen: SocketAddr) -> SocketAddr {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(match target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    target
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

/// The `--listen` a command line gives, read by the server's own parser (so `--listen=ADDR`,
/// and `--listen` as the value of another flag, mean what they mean to the server). Only the
/// command line counts here: clap would also take `SOCKET_SERVER_LISTEN` from this process's
/// environment, which is not necessarily the server's.
fn listen_argument<I>(argv: I) -> Option<SocketAddr>
where
    I: IntoIterator<Item = OsString>,
{
    let matches = crate::cli::Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(argv)
        .ok()?;
    if matches.value_source("listen") != Some(ValueSource::CommandLine) {
        return None;
    }
    matches.try_get_one::<SocketAddr>("listen").ok()?.copied()
}

/// The address a server with these arguments and this environment listens on, or None when it
/// could not have started with them.
fn listen_of(argv: Vec<OsString>, environment: &HashMap<OsString, OsString>) -> Option<SocketAddr> {
    if let Some(listen) = listen_argument(argv) {
        return Some(listen);
    }
    if let Some(listen) = environment.get(OsStr::new("SOCKET_SERVER_LISTEN")) {
        return listen.to_str()?.parse().ok();
    }
    if let Some(port) = environment.get(OsStr::new("PORT")) {
        let port: u16 = port.to_str()?.trim().parse().ok()?;
        return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    Some(DEFAULT_LISTEN)
}

/// The address of the server this check is meant for, when it can be seen under `proc`.
fn server_listen(proc: &Path) -> Option<SocketAddr> {
    let server = find_server(proc)?;
    let argv = nul_separated(&std::fs::read(server.join("cmdline")).ok()?);
    let environment = nul_separated(&std::fs::read(server.join("environ")).ok()?)
        .into_iter()
        .filter_map(|entry| {
            let bytes = entry.as_bytes();
            let equals = bytes.iter().position(|&b| b == b'=')?;
            Some((
                OsStr::from_bytes(&bytes[..equals]).to_owned(),
                OsStr::from_bytes(&bytes[equals + 1..]).to_owned(),
            ))
        })
        .collect();
    listen_of(argv, &environment)
}

/// The server's folder under `proc`: process 1 when it runs this executable (a container
/// started as `image [ARGS]`), else the only other process that does (`docker run --init`,
/// a service manager). Other health checks, running the same executable, do not count.
fn find_server(proc: &Path) -> Option<PathBuf> {
    let me = executable(&proc.join("self"))?;
    let own_pid = std::process::id().to_string();
    let is_server = |folder: &Path| {
        executable(folder) == Some(me)
            && std::fs::read(folder.join("cmdline"))
                .is_ok_and(|cmdline| !nul_separated(&cmdline).iter().any(|a| a == "--healthcheck"))
    };
    let first = proc.join("1");
    if own_pid != "1" && is_server(&first) {
        return Some(first);
    }
    let mut found = None;
    for entry in std::fs::read_dir(proc).ok()?.flatten() {
        let name = entry.file_name();
        let is_pid = !name.is_empty() && name.as_bytes().iter().all(u8::is_ascii_digit);
        if !is_pid || name == own_pid.as_str() || !is_server(&entry.path()) {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(entry.path());
    }
    found
}

/// The executable a process runs, as (device, inode): still right when the file was replaced
/// since (its path then ends in " (deleted)"). None for another user's process.
fn executable(process: &Path) -> Option<(u64, u64)> {
    let metadata = std::fs::metadata(process.join("exe")).ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// `/proc/PID/cmdline` and `/proc/PID/environ`: NUL-terminated entries.
fn nul_separated(bytes: &[u8]) -> Vec<OsString> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|entry| OsStr::from_bytes(entry).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("socket-server")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<OsString, OsString> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_command_line_comes_first_then_the_listen_variable_then_port() {
        let all = env(&[("SOCKET_SERVER_LISTEN", "127.0.0.1:4100"), ("PORT", "4200")]);
        assert_eq!(
            listen_of(argv(&["--listen", "127.0.0.1:4300"]), &all),
            addr("127.0.0.1:4300")
        );
        assert_eq!(
            listen_of(argv(&["--listen=[::1]:4300"]), &all),
            addr("[::1]:4300")
        );
        assert_eq!(listen_of(argv(&[]), &all), addr("127.0.0.1:4100"));
        assert_eq!(
            listen_of(argv(&[]), &env(&[("PORT", " 4200 ")])),
            addr("0.0.0.0:4200")
        );
        assert_eq!(listen_of(argv(&[]), &env(&[])), addr("0.0.0.0:4000"));
    }

    #[test]
    fn settings_the_server_would_refuse_name_no_address() {
        // The server stops on these with exit code 2 (an empty variable is a value to clap).
        for environment in [
            env(&[("SOCKET_SERVER_LISTEN", ""), ("PORT", "4200")]),
            env(&[("SOCKET_SERVER_LISTEN", "4000")]),
            env(&[("PORT", "http")]),
            env(&[("PORT", "")]),
        ] {
            assert_eq!(listen_of(argv(&[]), &environment), None, "{environment:?}");
        }
    }

    #[test]
    fn listen_as_the_value_of_another_flag_is_not_the_address() {
        // A folder named "--listen" is not an address: the address comes from the rest.
        assert_eq!(
            listen_of(
                argv(&["--packages-dir=--listen", "--log-level", "debug"]),
                &env(&[("PORT", "4200")])
            ),
            addr("0.0.0.0:4200")
        );
        assert_eq!(
            listen_of(
                argv(&[
                    "--log-level",
                    "debug",
                    "--listen",
                    "10.0.0.1:80",
                    "--healthcheck"
                ]),
                &env(&[])
            ),
            addr("10.0.0.1:80")
        );
    }

    #[test]
    fn proc_entries_are_split_on_nul() {
        assert_eq!(
            nul_separated(b"socket-server\0--listen\x000.0.0.0:5000\0"),
            argv(&["--listen", "0.0.0.0:5000"])
        );
        assert_eq!(nul_separated(b"a\0\0b\0"), vec!["a", "", "b"]);
        assert!(nul_separated(b"").is_empty());
    }

    #[test]
    fn a_wildcard_address_is_probed_on_loopback() {
        assert_eq!(
            probe_address(DEFAULT_LISTEN),
            "127.0.0.1:4000".parse().unwrap()
        );
        assert_eq!(
            probe_address("[::]:4000".parse().unwrap()),
            "[::1]:4000".parse().unwrap()
        );
        assert_eq!(
            probe_address("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }
}
