//! Facts about the machine and about processes, read from /proc.

use std::path::Path;
use std::process::Command;

use rpa_testkit::procfs::kib_field;
use serde::Serialize;

pub use rpa_testkit::procfs::cpu_seconds;

/// The machine a report was measured on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub memory_total_kib: Option<u64>,
    /// The soft limit on open files of this process (workers inherit it).
    pub open_files_limit: Option<u64>,
    /// `git rev-parse HEAD` in the working directory, `+dirty` when it has changes.
    pub git_commit: Option<String>,
    /// `socket-server --version` of the spawned binary.
    pub server_version: Option<String>,
    /// When the server binary was last written (the commit above is the working directory's
    /// at report time, which may be newer than the binary).
    pub server_binary_modified: Option<String>,
    pub loadgen_version: String,
    /// /proc/loadavg when the report was finished: other work on the machine shows here.
    pub load_average: String,
}

impl Machine {
    pub fn probe(server_bin: Option<&Path>) -> Machine {
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            memory_total_kib: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|text| kib_field(&text, "MemTotal")),
            open_files_limit: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|text| open_files_soft_limit(&text)),
            git_commit: git_commit(),
            server_version: server_bin.and_then(|bin| {
                let output = Command::new(bin).arg("--version").output().ok()?;
                Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
            }),
            server_binary_modified: server_bin.and_then(|bin| {
                let modified = std::fs::metadata(bin).ok()?.modified().ok()?;
                Some(
                    chrono::DateTime::<chrono::Utc>::from(modified)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
            }),
            loadgen_version: env!("CARGO_PKG_VERSION").to_owned(),
            load_average: load_average(),
        }
    }
}

fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let mut commit = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    if dirty {
        commit.push_str("+dirty");
    }
    Some(commit)
}

/// The three load averages of /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// TCP counters of the kernel (`TcpExt` of /proc/net/netstat) by name, e.g. `ListenOverflows`.
pub fn tcp_ext() -> std::collections::HashMap<String, u64> {
    std::fs::read_to_string("/proc/net/netstat")
        .map(|text| parse_tcp_ext(&text))
        .unwrap_or_default()
}

fn parse_tcp_ext(text: &str) -> std::collections::HashMap<String, u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Default::default();
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
        .collect()
}

fn open_files_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Memory of a process: resident now and the peak, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_kib: kib_field(&text, "VmRSS")?,
        hwm_kib: kib_field(&text, "VmHWM")?,
    })
}

/// CPU time of this process, in seconds.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds(std::process::id())
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstat_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 12 14\nIpExt: InNoRoutes\nIpExt: 0\n";
        let counters = parse_tcp_ext(text);
        assert_eq!(counters["ListenOverflows"], 12);
        assert_eq!(counters["ListenDrops"], 14);
        assert!(tcp_ext().contains_key("ListenOverflows"));
    }

    #[test]
    fn limits_line() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            20000                20000                files     \n";
        assert_eq!(open_files_soft_limit(text), Some(20000));
    }

    #[test]
    fn this_process_is_visible() {
        let pid = std::process::id();
        assert!(memory(pid).unwrap().rss_kib > 0);
        assert!(cpu_seconds(pid).is_some());
        assert!(open_fds(pid).unwrap() > 0);
    }
}
