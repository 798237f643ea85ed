//! The cron-specific reasons a schedule is refused. Problems with request fields are
//! rpa-validation's [`FieldError`]s.

use chrono::TimeDelta;
use rpa_validation::FieldError;

/// Why a cron expression (with its bounds) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The expression cannot be read.
    #[error("invalid cron expression: {reason}")]
    Syntax { reason: String },
    /// Neither the 5-field crontab form nor the 6-field form with seconds.
    #[error(
        "a cron expression has 5 fields (minute hour day-of-month month day-of-week) \
         or 6 with a leading seconds field, not {found}"
    )]
    WrongFieldCount { found: usize },
    /// No date matches the expression (e.g. `0 0 30 2 *`), up to the supported horizon (2100).
    #[error("the cron expression never fires: no date matches it (searched up to the end of 2100)")]
    NeverFires,
    /// Two consecutive occurrences are closer than the configured minimum interval.
    #[error(
        "the cron expression fires every {}, more often than the minimum interval of {}",
        human_delta(*interval),
        human_delta(*min)
    )]
    TooFrequent { interval: TimeDelta, min: TimeDelta },
    /// `start`/`end` leave no occurrence: end before start, end in the past, or no
    /// occurrence between them.
    #[error("{reason}")]
    BadBounds { reason: String },
}

impl CronError {
    /// The `Schedule` field a client should fix for this error: bound problems belong to
    /// `Schedule.end`, every other one to `Schedule.cron`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::BadBounds { .. } => "Schedule.end",
            _ => "Schedule.cron",
        }
    }
}

impl From<CronError> for FieldError {
    fn from(error: CronError) -> Self {
        let message = match &error {
            CronError::BadBounds { reason } => reason.clone(),
            other => other.to_string(),
        };
        FieldError::invalid(error.field(), message)
    }
}

/// `90 s`, `1 min 30 s`, `2 h`: readable in an error sentence (chrono prints ISO 8601).
pub(crate) fn human_delta(delta: TimeDelta) -> String {
    let total = delta.num_seconds();
    if total == 0 && delta.subsec_nanos() != 0 {
        return format!("{} ms", delta.num_milliseconds());
    }
    let (hours, minutes, seconds) = (total / 3600, (total % 3600) / 60, total % 60);
    let mut parts = Vec::new();
    if hours != 0 {
        parts.push(format!("{hours} h"));
    }
    if minutes != 0 {
        parts.push(format!("{minutes} min"));
    }
    if seconds != 0 || parts.is_empty() {
        parts.push(format!("{seconds} s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_delta_reads_well() {
        assert_eq!(human_delta(TimeDelta::seconds(1)), "1 s");
        assert_eq!(human_delta(TimeDelta::seconds(60)), "1 min");
        assert_eq!(human_delta(TimeDelta::seconds(3690)), "1 h 1 min 30 s");
        assert_eq!(human_delta(TimeDelta::zero()), "0 s");
        assert_eq!(human_delta(TimeDelta::milliseconds(250)), "250 ms");
    }

    #[test]
    fn cron_errors_map_to_fields() {
        let bounds: FieldError = CronError::BadBounds {
            reason: "end is before start".into(),
        }
        .into();
        assert_eq!(bounds.field, "Schedule.end");
        assert_eq!(bounds.message, "end is before start");
        let never: FieldError = CronError::NeverFires.into();
        assert_eq!(never.field, "Schedule.cron");
        assert!(!never.is_missing());
    }
}
