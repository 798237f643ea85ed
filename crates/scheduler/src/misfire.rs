//! The misfire rule: after downtime, one catch-up run per schedule.

use chrono::{DateTime, Utc};

use crate::recurring::CronSchedule;

/// Missed occurrences are counted up to this many; beyond it [`CatchUp::missed_capped`] is
/// set, so a per-second schedule after a month of downtime costs at most this many steps.
pub const CATCH_UP_COUNT_CAP: u64 = 10_000;

/// What a recurring schedule missed while the server was down.
///
/// The rule: however many occurrences were missed, the schedule gets **one** catch-up run
/// (when `missed > 0`), then continues at [`next`](Self::next). Robots are not flooded with
/// a backlog of identical jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    /// Occurrences in `(last_fire, now]`, counted up to [`CATCH_UP_COUNT_CAP`].
    pub missed: u64,
    /// True when counting stopped at the cap: `missed` is then a lower bound.
    pub missed_capped: bool,
    /// The latest occurrence in `(last_fire, now]`, the one the catch-up run stands for.
    pub latest_missed: Option<DateTime<Utc>>,
    /// The first occurrence strictly after `now` (and after `last_fire`), if the schedule
    /// fires again.
    pub next: Option<DateTime<Utc>>,
}

/// Counts what `schedule` missed between its last fire and `now`, and finds the next regular
/// occurrence. `last_fire` is the last occurrence that ran (or the schedule's creation time,
/// if it never ran). If `now` is not after `last_fire` (a clock set back), nothing was missed
/// and `next` comes after `last_fire`, so an occurrence never runs twice.
pub fn catch_up(schedule: &CronSchedule, last_fire: DateTime<Utc>, now: DateTime<Utc>) -> CatchUp {
    let mut result = CatchUp {
        missed: 0,
        missed_capped: false,
        latest_missed: None,
        next: None,
    };
    if now <= last_fire {
        result.next = schedule.next_after(last_fire);
        return result;
    }
    for occurrence in schedule.occurrences_after(last_fire) {
        if occurrence > now {
            result.next = Some(occurrence);
            return result;
        }
        if result.missed == CATCH_UP_COUNT_CAP {
            // Too many to walk: find the two ends directly instead.
            result.missed_capped = true;
            result.latest_missed = schedule.previous_at_or_before(now);
            result.next = schedule.next_after(now);
            return result;
        }
        result.missed += 1;
        result.latest_missed = Some(occurrence);
    }
    result
}
