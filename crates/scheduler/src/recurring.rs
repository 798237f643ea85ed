//! Recurring schedules: a cron expression in a zone, optionally bounded by `start`/`end`.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::cron_expr::translate;
use crate::error::CronError;
use crate::local::{resolve_local, wall_time};
use crate::wall::{WallIter, WallSchedule};

/// Occurrences sampled to find the smallest spacing of an expression.
const FREQUENCY_SAMPLE: usize = 1000;

/// 2000-01-01T00:00:00Z: where [`CronSchedule::parse`] looks for occurrences when it has
/// neither `now` nor `start`.
fn reference_instant() -> DateTime<Utc> {
    DateTime::from_timestamp(946_684_800, 0).unwrap_or_default()
}

/// A validated recurring schedule.
///
/// Occurrences are computed on the wall clock of [`zone`](Self::zone) and mapped to instants
/// with [`resolve_local`](crate::resolve_local): a wall time in a spring-forward gap runs at
/// the instant the clocks jump (several gap times, and a run at the jump instant itself,
/// collapse into one run); a wall time that exists twice runs once, at its earlier instant.
/// Occurrences are whole seconds (jump instants included) up to the end of year 2100, the
/// horizon of the `cron` crate.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    quartz: Vec<String>,
    wall: WallSchedule,
    zone: Tz,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

impl CronSchedule {
    /// Parses and validates without knowing the current time: the "never fires" and
    /// frequency checks look from `start`, or from 2000-01-01 when there is no `start`, and an
    /// `end` in the past is not detected. Prefer [`parse_at`](Self::parse_at) for new input.
    pub fn parse(
        expression: &str,
        zone: Tz,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        min_interval: TimeDelta,
    ) -> Result<CronSchedule, CronError> {
        Self::build(expression, zone, start, end, min_interval, None)
    }

    /// Parses and validates as of `now`: besides [`parse`](Self::parse)'s checks, an `end`
    /// before `now` is refused, and the schedule must fire at least once after the later of
    /// `now` and `start` (and not after `end`). [`parse_schedule`](crate::parse_schedule)
    /// uses this one.
    pub fn parse_at(
        expression: &str,
        zone: Tz,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        min_interval: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<CronSchedule, CronError> {
        Self::build(expression, zone, start, end, min_interval, Some(now))
    }

    fn build(
        expression: &str,
        zone: Tz,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        min_interval: TimeDelta,
        now: Option<DateTime<Utc>>,
    ) -> Result<CronSchedule, CronError> {
        let quartz = translate(expression)?;
        let wall = WallSchedule::new(&quartz)?;
        let schedule = CronSchedule {
            expression: expression.trim().to_owned(),
            quartz,
            wall,
            zone,
            start,
            end,
        };
        schedule.check_bounds(now)?;
        let from = now
            .or_else(|| start.map(just_before))
            .unwrap_or_else(reference_instant);
        schedule.check_fires(from)?;
        schedule.check_frequency(from, min_interval)?;
        Ok(schedule)
    }

    fn check_bounds(&self, now: Option<DateTime<Utc>>) -> Result<(), CronError> {
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end < start
        {
            return Err(CronError::BadBounds {
                reason: format!("end {} is before start {}", rfc3339(end), rfc3339(start)),
            });
        }
        if let (Some(now), Some(end)) = (now, self.end)
            && end < now
        {
            return Err(CronError::BadBounds {
                reason: format!(
                    "end {} is in the past: the schedule would never fire",
                    rfc3339(end)
                ),
            });
        }
        Ok(())
    }

    fn check_fires(&self, from: DateTime<Utc>) -> Result<(), CronError> {
        if self.occurrences_after(from).next().is_some() {
            return Ok(());
        }
        let fires_at_all = self
            .wall
            .iter_after(wall_time(self.zone, reference_instant()))
            .next()
            .is_some();
        match self.end {
            Some(end) if fires_at_all => Err(CronError::BadBounds {
                reason: format!(
                    "no occurrence of `{}` falls between {} and the end {}",
                    self.expression,
                    rfc3339(self.start.map_or(from, |start| start.max(from))),
                    rfc3339(end)
                ),
            }),
            _ => Err(CronError::NeverFires),
        }
    }

    /// Measured on the wall clock, so the answer does not depend on the zone: a daylight-saving
    /// jump may bring two runs closer once (e.g. `30 * * * *` runs at 01:30 and at the 03:00
    /// jump), which is not the expression's frequency.
    fn check_frequency(&self, from: DateTime<Utc>, min: TimeDelta) -> Result<(), CronError> {
        if min <= TimeDelta::seconds(1) {
            // Cron times are whole seconds: nothing can be closer than one second.
            return Ok(());
        }
        let mut walls = self.wall.iter_after(wall_time(self.zone, from));
        let Some(mut previous) = walls.next() else {
            return Ok(());
        };
        let mut smallest: Option<TimeDelta> = None;
        for wall in walls.take(FREQUENCY_SAMPLE - 1) {
            let gap = wall - previous;
            smallest = Some(smallest.map_or(gap, |s| s.min(gap)));
            previous = wall;
        }
        match smallest {
            Some(interval) if interval < min => Err(CronError::TooFrequent { interval, min }),
            _ => Ok(()),
        }
    }

    /// The expression as given (surrounding whitespace removed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The translated Quartz expressions handed to the `cron` crate: one, or two whose
    /// occurrences are merged when both day-of-month and day-of-week are restricted.
    pub fn quartz_expressions(&self) -> &[String] {
        &self.quartz
    }

    /// The zone whose wall clock the expression is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// No occurrence before this instant (an occurrence exactly at it counts).
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.start
    }

    /// No occurrence after this instant (an occurrence exactly at it counts).
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.end
    }

    /// The first occurrence strictly after `t`, not before `start` and not after `end`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.occurrences_after(t).next()
    }

    /// The next `n` occurrences from the later of `from` and `start`: strictly after `from`,
    /// and an occurrence exactly at `start` counts.
    pub fn upcoming(&self, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.occurrences_after(from).take(n).collect()
    }

    /// Every occurrence strictly after `t` (and within `start`/`end`), in increasing order
    /// without duplicates. Lazy: the due-job loop can pull as many as it needs.
    pub fn occurrences_after(&self, t: DateTime<Utc>) -> Occurrences {
        let after = match self.start {
            Some(start) => t.max(just_before(start)),
            None => t,
        };
        // The wall reading of `after` maps back to `after` or earlier (an earlier instant of a
        // repeated hour), and the mapping is monotone: no earlier wall time can map after `t`.
        let walls = self.wall.iter_after(wall_time(self.zone, after));
        Occurrences {
            zone: self.zone,
            end: self.end,
            walls,
            last: after,
            finished: false,
        }
    }

    /// The latest occurrence at or before `t` (within `start`/`end`), if any.
    pub fn previous_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let bound = match self.end {
            Some(end) if end < t => end,
            _ => t,
        };
        let wall = wall_time(self.zone, bound);
        let mut best = self
            .wall
            .last_at_or_before(wall)
            .map(|found| resolve_local(self.zone, found));
        // During the second pass of a repeated hour, wall times after `wall` have already run
        // (at their first instant): they count as before `t`.
        for later in self.wall.iter_after(wall) {
            let instant = resolve_local(self.zone, later);
            if instant > bound {
                break;
            }
            best = Some(instant);
        }
        best.filter(|found| self.start.is_none_or(|start| *found >= start))
    }
}

/// Iterator over the instants of a [`CronSchedule`], from
/// [`CronSchedule::occurrences_after`].
pub struct Occurrences {
    zone: Tz,
    end: Option<DateTime<Utc>>,
    walls: WallIter,
    last: DateTime<Utc>,
    finished: bool,
}

impl Iterator for Occurrences {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        if self.finished {
            return None;
        }
        for wall in self.walls.by_ref() {
            let instant = resolve_local(self.zone, wall);
            // Gap times collapse onto the jump instant, and wall times of a repeated hour
            // read during its second pass map before `last`: both were already yielded.
            if instant <= self.last {
                continue;
            }
            if self.end.is_some_and(|end| instant > end) {
                break;
            }
            self.last = instant;
            return Some(instant);
        }
        self.finished = true;
        None
    }
}

impl std::fmt::Debug for Occurrences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Occurrences")
            .field("zone", &self.zone)
            .field("end", &self.end)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

/// One nanosecond earlier: "strictly after this" then includes `instant` itself.
fn just_before(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant
        .checked_sub_signed(TimeDelta::nanoseconds(1))
        .unwrap_or(instant)
}

pub(crate) fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
