//! What `/proc` says about a process: the server's memory and CPU time, for the tools' figures.

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, `RssAnon`, `RssFile`, `RssShmem`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&status, field)
}

/// The number of a `Name:   1234 kB` line (of `/proc/PID/status` or `/proc/meminfo`).
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// User plus system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_from_stat(&stat)
}

fn cpu_from_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = "Name:\tsocket-server\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(kib_field(text, "VmRSS"), Some(10240));
        assert_eq!(kib_field(text, "VmHWM"), Some(20480));
        assert_eq!(kib_field(text, "VmSwap"), None);
    }

    #[test]
    fn cpu_from_a_stat_line() {
        let line =
            "1234 (socket server) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 0 0";
        assert_eq!(cpu_from_stat(line), Some(3.0));
    }

    #[test]
    fn this_process_is_visible() {
        let pid = std::process::id();
        assert!(status_kib(pid, "VmRSS").is_some_and(|kib| kib > 0));
        assert!(cpu_seconds(pid).is_some());
    }
}
