//! Error types: one problem per request field, and the cron-specific reasons.

use chrono::TimeDelta;

/// One problem with one field of a trigger's `Schedule` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// The field at fault, as the client wrote it: `"Schedule.date"`, `"Schedule.cron"`, or
    /// `"Schedule"` when the whole object is at fault.
    pub field: String,
    /// True when the field is absent (or empty) but required.
    pub missing: bool,
    /// One human sentence saying why, e.g. `"31 February does not exist"`.
    pub message: String,
}

impl ScheduleError {
    /// A required field is absent or empty.
    pub fn missing(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            missing: true,
            message: message.into(),
        }
    }

    /// A field is present but its value is not acceptable.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            missing: false,
            message: message.into(),
        }
    }
}

/// Every problem found in a `Schedule` object. Never empty when returned as `Err`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule: {}", join_errors(.0))]
pub struct ScheduleErrors(pub Vec<ScheduleError>);

impl ScheduleErrors {
    /// The problems, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, ScheduleError> {
        self.0.iter()
    }
}

impl From<ScheduleError> for ScheduleErrors {
    fn from(error: ScheduleError) -> Self {
        Self(vec![error])
    }
}

impl<'a> IntoIterator for &'a ScheduleErrors {
    type Item = &'a ScheduleError;
    type IntoIter = std::slice::Iter<'a, ScheduleError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

fn join_errors(errors: &[ScheduleError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

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

impl From<CronError> for ScheduleError {
    fn from(error: CronError) -> Self {
        let message = match &error {
            CronError::BadBounds { reason } => reason.clone(),
            other => other.to_string(),
        };
        ScheduleError::invalid(error.field(), message)
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
    fn errors_display_every_problem() {
        let errors = ScheduleErrors(vec![
            ScheduleError::invalid("Schedule.date", "31 February does not exist"),
            ScheduleError::missing("Schedule.time", "Schedule.time is required"),
        ]);
        assert_eq!(
            errors.to_string(),
            "invalid schedule: Schedule.date: 31 February does not exist; \
             Schedule.time: Schedule.time is required"
        );
    }

    #[test]
    fn cron_errors_map_to_fields() {
        let bounds: ScheduleError = CronError::BadBounds {
            reason: "end is before start".into(),
        }
        .into();
        assert_eq!(bounds.field, "Schedule.end");
        assert_eq!(bounds.message, "end is before start");
        let never: ScheduleError = CronError::NeverFires.into();
        assert_eq!(never.field, "Schedule.cron");
        assert!(!never.missing);
    }
}
