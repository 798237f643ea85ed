//! The server log: one file per UTC day in the log folder (`YYYY-MM-DD.log`, switching at
//! midnight while running), plus standard error.
//!
//! Every line is one line. Robots and clients put text in log lines (names, messages, paths), so
//! the formatter escapes control characters in the whole message and bounds its length: a robot
//! cannot forge a log line, colour a terminal, or fill the disk with one message. Values from
//! outside are also quoted at the call site with [`Untrusted`], so a reader can tell where they
//! start and end.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::path::Path;

use log::LevelFilter;

use crate::config::SettingError;

/// Longest log message, in bytes, before it is cut.
pub const MAX_LINE_BYTES: usize = 4096;

/// Parsed log directives: a default level and per-target levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub default: LevelFilter,
    pub targets: Vec<(String, LevelFilter)>,
}

impl Directives {
    pub fn parse(text: &str) -> Result<Directives, SettingError> {
        let mut directives = Directives {
            default: LevelFilter::Info,
            targets: Vec::new(),
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let level = |name: &str| {
                name.trim()
                    .parse::<LevelFilter>()
                    .map_err(|_| SettingError::LogLevel {
                        level: name.to_owned(),
                    })
            };
            match part.split_once('=') {
                Some((target, name)) => directives
                    .targets
                    .push((target.trim().to_owned(), level(name)?)),
                None => directives.default = level(part)?,
            }
        }
        Ok(directives)
    }

    fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, level)| *level)
            .fold(self.default, |a, b| a.max(b))
    }
}

/// A logger ready to install, with the most verbose level it lets through. The binary installs
/// it: a library never installs a global logger.
pub struct Logger {
    pub max_level: LevelFilter,
    pub log: Box<dyn log::Log>,
}

/// Why the log cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot create the log folder {path}: {source}")]
    CreateFolder {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write to the log folder {path}: {source}")]
    NotWritable {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Directives(#[from] SettingError),
}

impl LoggingError {
    /// The flag of the setting at fault: `--log-dir`, or `--log-level` for the directives.
    pub fn setting(&self) -> &'static str {
        match self {
            LoggingError::CreateFolder { .. } | LoggingError::NotWritable { .. } => "--log-dir",
            LoggingError::Directives(_) => "--log-level",
        }
    }
}

/// Builds the logger: daily files in `dir` and, when `to_stderr`, standard error.
pub fn logger(dir: &Path, directives: &str, to_stderr: bool) -> Result<Logger, LoggingError> {
    let directives = Directives::parse(directives)?;
    let shown = dir.display().to_string();
    std::fs::create_dir_all(dir).map_err(|source| LoggingError::CreateFolder {
        path: shown.clone(),
        source,
    })?;
    // fern opens the day's file lazily and reports failures per record on stderr; open it now so
    // that an unwritable folder stops the start instead.
    let today = dir.join(chrono::Utc::now().format("%Y-%m-%d.log").to_string());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&today)
        .map_err(|source| LoggingError::NotWritable {
            path: shown.clone(),
            source,
        })?;

    let mut prefix = dir.as_os_str().to_owned();
    prefix.push(std::path::MAIN_SEPARATOR_STR);
    let mut dispatch = fern::Dispatch::new()
        .format(|out, message, record| {
            out.finish(format_args!(
                "{} {:<5} {} {}",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                record.level(),
                record.target(),
                OneLine(message)
            ))
        })
        .level(directives.default)
        .chain(fern::DateBased::new(prefix, "%Y-%m-%d.log").utc_time());
    for (target, level) in &directives.targets {
        dispatch = dispatch.level_for(target.clone(), *level);
    }
    if to_stderr {
        let stderr: Box<dyn std::io::Write + Send> = Box::new(Stderr);
        dispatch = dispatch.chain(
            fern::Dispatch::new()
                .filter(|metadata| metadata.target() != FILE_ONLY)
                .chain(stderr),
        );
    }
    let (_, log) = dispatch.into_log();
    Ok(Logger {
        max_level: directives.max(),
        log,
    })
}

/// The target of records that go to the log file only, never to standard error: a failed start,
/// which the binary reports on standard error itself, in one line.
pub const FILE_ONLY: &str = "file_only";

/// Standard error for log lines, which a closed or broken stderr does not stop: fern panics
/// when a line can be written neither to its output nor to stderr, and a server piped into
/// `head -1` must keep running (and stop with 0 on SIGTERM).
struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Repeated warnings of one kind (refused requests, bad frames, refused connections) from
/// clients the server does not control: at most `per_second` lines a second are written, and
/// the next line written says how many were left out, so a flood cannot fill the disk and the
/// log still tells how big it was.
pub(crate) struct Throttle {
    per_second: u32,
    state: std::sync::Mutex<ThrottleState>,
}

struct ThrottleState {
    window_start: Option<std::time::Instant>,
    in_window: u32,
    left_out: u64,
}

impl Throttle {
    pub(crate) const fn new(per_second: u32) -> Throttle {
        Throttle {
            per_second,
            state: std::sync::Mutex::new(ThrottleState {
                window_start: None,
                in_window: 0,
                left_out: 0,
            }),
        }
    }

    /// Whether a line may be written now; if so, what it must add about the lines left out.
    pub(crate) fn admit(&self) -> Option<LeftOut> {
        self.admit_at(std::time::Instant::now())
    }

    fn admit_at(&self, now: std::time::Instant) -> Option<LeftOut> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let new_window = state
            .window_start
            .is_none_or(|start| now.duration_since(start) >= std::time::Duration::from_secs(1));
        if new_window {
            state.window_start = Some(now);
            state.in_window = 0;
        }
        if state.in_window >= self.per_second {
            state.left_out += 1;
            return None;
        }
        state.in_window += 1;
        Some(LeftOut(std::mem::take(&mut state.left_out)))
    }
}

/// How many lines of a kind were left out before this one; shown as ` (N similar lines left
/// out)`, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeftOut(pub(crate) u64);

impl fmt::Display for LeftOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            1 => f.write_str(" (1 similar line left out)"),
            n => write!(f, " ({n} similar lines left out)"),
        }
    }
}

/// The kinds of warnings a client can cause at will, each throttled on its own.
pub(crate) mod warnings {
    use super::Throttle;

    /// Lines a second per kind.
    const PER_SECOND: u32 = 5;

    /// API requests refused: 401 (no or a wrong token), 403 (a foreign browser origin).
    pub(crate) static REFUSED_REQUESTS: Throttle = Throttle::new(PER_SECOND);
    /// Robot upgrades refused (401, 403) or failed.
    pub(crate) static REFUSED_HANDSHAKES: Throttle = Throttle::new(PER_SECOND);
    /// Bad frames and protocol errors from robots, messages before registration, declined
    /// metadata.
    pub(crate) static BAD_FRAMES: Throttle = Throttle::new(PER_SECOND);
    /// Connections refused or cut off: too many from one address or in all, bodies too slow or
    /// over the budget.
    pub(crate) static REFUSED_CONNECTIONS: Throttle = Throttle::new(PER_SECOND);
    /// Triggers refused (a line each at info level).
    pub(crate) static REFUSED_TRIGGERS: Throttle = Throttle::new(PER_SECOND);
    /// `accept` failing (out of file descriptors): once a second.
    pub(crate) static ACCEPT_ERRORS: Throttle = Throttle::new(1);
}

/// An error and its causes on one line, `error: cause: cause`, as a failed start is reported.
/// A cause whose text the line already ends with is not repeated: some errors show their
/// source in their own text as well as handing it on.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !text.is_empty() && !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = error.source();
        }
        f.write_str(&line)
    }
}

/// Formats a message with its control characters escaped and its length bounded.
struct OneLine<'a>(&'a fmt::Arguments<'a>);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_str() {
            Some(text) => f.write_str(&escape(text, MAX_LINE_BYTES)),
            None => {
                let text = self.0.to_string();
                f.write_str(&escape(&text, MAX_LINE_BYTES))
            }
        }
    }
}

/// Characters that could break a line, hide text or reorder it on a terminal: C0 and C1
/// controls, DEL, line and paragraph separators, and the bidirectional overrides.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with dangerous characters escaped (`\n`, `\r`, `\t`, `\u{1b}`) and cut after about
/// `max` bytes with a note of how much was left out.
pub fn escape(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max && !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max) + 16);
    for (index, c) in text.char_indices() {
        if out.len() >= max {
            let _ = write!(out, "... ({} more bytes)", text.len() - index);
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Untrusted text for a log line: quoted, with quotes and backslashes escaped as well as
/// control characters, and bounded.
pub struct Untrusted<'a>(pub &'a str);

/// Longest untrusted value quoted in a log line.
pub const MAX_VALUE_BYTES: usize = 1024;

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        let escaped = escape(self.0, MAX_VALUE_BYTES);
        for c in escaped.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_break_a_line() {
        let forged = "hello\n2026-01-01T00:00:00.000Z INFO rpa_server fake\r\x1b[31mred\u{2028}";
        let escaped = escape(forged, 1000);
        assert!(!escaped.contains('\n') && !escaped.contains('\r') && !escaped.contains('\x1b'));
        assert!(escaped.contains("\\n2026") && escaped.contains("\\u{1b}[31m"));
        assert!(escaped.contains("\\u{2028}"));
    }

    #[test]
    fn long_text_is_cut_with_a_note() {
        let long = "x".repeat(10_000);
        let escaped = escape(&long, 100);
        assert!(escaped.len() < 150);
        assert!(escaped.ends_with("(9900 more bytes)"));
        assert!(matches!(escape("short", 100), Cow::Borrowed(_)));
    }

    #[test]
    fn untrusted_values_are_quoted() {
        let shown = Untrusted("a\"b\nc").to_string();
        assert_eq!(shown, "\"a\\\"b\\nc\"");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Option<Box<Layer>> {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| Some(Box::new(Layer { text, source })))
    }

    #[test]
    fn a_chain_is_one_line_without_repeats() {
        let chain = layers(&["--database", "cannot open it", "denied"]).unwrap();
        assert_eq!(
            Chain(&*chain).to_string(),
            "--database: cannot open it: denied"
        );
        // The middle error shows its cause itself, as many do.
        let chain = layers(&["--packages-dir", "cannot create x: denied", "denied"]).unwrap();
        assert_eq!(
            Chain(&*chain).to_string(),
            "--packages-dir: cannot create x: denied"
        );
        let alone = layers(&["alone"]).unwrap();
        assert_eq!(Chain(&*alone).to_string(), "alone");
    }

    #[test]
    fn a_throttle_writes_a_few_lines_a_second_and_counts_the_rest() {
        let throttle = Throttle::new(2);
        let start = std::time::Instant::now();
        assert_eq!(throttle.admit_at(start), Some(LeftOut(0)));
        assert_eq!(throttle.admit_at(start), Some(LeftOut(0)));
        for _ in 0..5 {
            assert_eq!(throttle.admit_at(start), None);
        }
        let later = start + std::time::Duration::from_millis(1001);
        assert_eq!(throttle.admit_at(later), Some(LeftOut(5)));
        assert_eq!(throttle.admit_at(later), Some(LeftOut(0)));
        assert_eq!(LeftOut(5).to_string(), " (5 similar lines left out)");
        assert_eq!(LeftOut(0).to_string(), "");
    }

    #[test]
    fn directives() {
        let parsed = Directives::parse("warn,rpa_server::ws=debug").unwrap();
        assert_eq!(parsed.default, LevelFilter::Warn);
        assert_eq!(
            parsed.targets,
            [("rpa_server::ws".to_owned(), LevelFilter::Debug)]
        );
        assert_eq!(parsed.max(), LevelFilter::Debug);
        assert!(Directives::parse("loud").is_err());
    }
}
