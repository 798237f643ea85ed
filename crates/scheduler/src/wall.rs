//! Wall-clock iteration of translated schedules.
//!
//! The `cron` crate runs here on a "fake UTC" clock that holds wall time, so it never skips or
//! repeats a wall time; daylight saving is applied afterwards by the caller, through
//! [`resolve_local`](crate::resolve_local).

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};

use crate::cron_expr::syntax;
use crate::error::CronError;

/// Parsed Quartz schedules whose occurrences are merged: wall-clock times without a zone.
#[derive(Debug, Clone)]
pub(crate) struct WallSchedule {
    parts: Vec<cron::Schedule>,
}

impl WallSchedule {
    pub(crate) fn new(quartz: &[String]) -> Result<Self, CronError> {
        let parts = quartz
            .iter()
            .map(|text| cron::Schedule::from_str(text).map_err(|error| syntax(error.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { parts })
    }

    /// Wall times strictly after `wall` (at whole-second resolution), in order, no duplicates.
    pub(crate) fn iter_after(&self, wall: NaiveDateTime) -> WallIter {
        let start = Utc.from_utc_datetime(&wall);
        let heads = self
            .parts
            .iter()
            .map(|part| {
                let mut iter = part.after_owned(start);
                let head = iter.next();
                (head, iter)
            })
            .collect();
        WallIter { heads }
    }

    /// The latest wall time at or before `wall`.
    pub(crate) fn last_at_or_before(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        // `cron` looks strictly before its argument (at whole seconds); one nanosecond later
        // includes `wall` itself.
        let bound = Utc.from_utc_datetime(&wall) + TimeDelta::nanoseconds(1);
        self.parts
            .iter()
            .filter_map(|part| part.after(&bound).next_back())
            .max()
            .map(|found| found.naive_utc())
    }
}

/// Merges the parts' iterators in order, without duplicates.
pub(crate) struct WallIter {
    heads: Vec<(Option<DateTime<Utc>>, cron::OwnedScheduleIterator<Utc>)>,
}

impl Iterator for WallIter {
    type Item = NaiveDateTime;

    fn next(&mut self) -> Option<NaiveDateTime> {
        let earliest = self.heads.iter().filter_map(|(head, _)| *head).min()?;
        for (head, iter) in &mut self.heads {
            if *head == Some(earliest) {
                *head = iter.next();
            }
        }
        Some(earliest.naive_utc())
    }
}
