//! `--healthcheck` without `--listen` of its own checks the running server where that server
//! listens, found the way the server found it: its arguments, then its environment. In a
//! container the check is a process of its own that gets the environment but not the server's
//! arguments; here the server is the only other process running the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_socket-server");

/// The check looks for the one server running this binary: the tests take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `N` distinct ports nothing listens on (for a moment: long enough for these tests). Drawn
/// together, all bound at once: drawn one by one, a port given back could be drawn again, and a
/// port meant to stay closed would then be a server's.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    listeners.map(|listener| listener.local_addr().unwrap().port())
}

/// A server process in a temporary folder, killed when dropped.
struct Running {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server with exactly these arguments and listen settings (the test's own PORT and
/// SOCKET_SERVER_LISTEN are not passed on) and waits until it listens.
fn start(args: &[&str], environment: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["--log-stderr", "false"])
        .args(args)
        .env_remove("PORT")
        .env_remove("SOCKET_SERVER_LISTEN")
        .env_remove("DATABASE_URL")
        .envs(environment.iter().copied())
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("listening on ") {
                let _ = sender.send(line);
            }
        }
    });
    let running = Running { child, _dir: dir };
    receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the server listens");
    running
}

/// `socket-server --healthcheck ARGS` with these listen settings of its own: its exit code.
fn healthcheck(args: &[&str], environment: &[(&str, &str)]) -> Option<i32> {
    Command::new(BIN)
        .arg("--healthcheck")
        .args(args)
        .env_remove("PORT")
        .env_remove("SOCKET_SERVER_LISTEN")
        .envs(environment.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn the_server_is_found_by_its_listen_argument() {
    let _turn = one_at_a_time();
    let [closed, first, second] = free_ports();
    let closed = closed.to_string();
    // The check's own PORT names a port nothing listens on: only the server's setting helps.
    let own = [("PORT", closed.as_str())];
    for (form, port) in [("--listen {}", first), ("--listen={}", second)] {
        let listen = format!("127.0.0.1:{port}");
        let line = form.replace("{}", &listen);
        let args: Vec<&str> = line.split(' ').collect();
        let _server = start(&args, &[]);
        assert_eq!(
            healthcheck(&[], &own),
            Some(0),
            "server started with {line}"
        );
    }
}

#[test]
fn the_server_is_found_by_its_environment_in_the_servers_order() {
    let _turn = one_at_a_time();
    let [closed, first, second, third] = free_ports();
    let closed = closed.to_string();
    let own = [("PORT", closed.as_str())];

    let listen = format!("127.0.0.1:{first}");
    let server = start(&[], &[("SOCKET_SERVER_LISTEN", &listen), ("PORT", &closed)]);
    assert_eq!(
        healthcheck(&[], &own),
        Some(0),
        "SOCKET_SERVER_LISTEN before PORT"
    );
    drop(server);

    let port = second.to_string();
    let server = start(&[], &[("PORT", &port)]);
    assert_eq!(healthcheck(&[], &own), Some(0), "PORT alone");
    drop(server);

    let listen = format!("127.0.0.1:{third}");
    let elsewhere = format!("127.0.0.1:{closed}");
    let _server = start(
        &["--listen", &listen],
        &[("SOCKET_SERVER_LISTEN", &elsewhere)],
    );
    assert_eq!(
        healthcheck(&[], &own),
        Some(0),
        "--listen before the environment"
    );
}

#[test]
fn the_checks_own_listen_argument_wins() {
    let _turn = one_at_a_time();
    let [open, closed] = free_ports();
    let listen = format!("127.0.0.1:{open}");
    let _server = start(&["--listen", &listen], &[]);
    let closed = format!("127.0.0.1:{closed}");
    assert_eq!(healthcheck(&["--listen", &closed], &[]), Some(1));
    assert_eq!(healthcheck(&["--listen", &listen], &[]), Some(0));
}

#[test]
fn without_one_server_in_sight_the_check_uses_its_own_settings() {
    let _turn = one_at_a_time();
    let [closed, first, second] = free_ports();
    let closed = closed.to_string();
    assert_eq!(healthcheck(&[], &[("PORT", &closed)]), Some(1), "no server");

    // Two servers: neither is the check's, which then goes by its own environment.
    let first = format!("127.0.0.1:{first}");
    let second = format!("127.0.0.1:{second}");
    let _first = start(&["--listen", &first], &[]);
    let _second = start(&["--listen", &second], &[]);
    assert_eq!(healthcheck(&[], &[("PORT", &closed)]), Some(1));
    assert_eq!(
        healthcheck(&[], &[("SOCKET_SERVER_LISTEN", &second)]),
        Some(0)
    );
}
