//! Recurring schedules at their occurrences: one job instance per occurrence, one catch-up run
//! after downtime, no second instance while one is still pending. Runs inside a write, so the
//! decision and its record are one transaction.

use chrono::{DateTime, TimeDelta, Utc};
use rpa_scheduler::{CronSchedule, Tz, catch_up};
use rpa_store::{DeliveryPolicy, JobRecord, PauseOutcome, ScheduleRecord, StoreError, WriteTx};

use crate::http::views::time;

/// Beyond this, an instance is reported as late.
const ON_TIME: TimeDelta = TimeDelta::seconds(1);

/// The schedule's cron expression as stored, read again. It was validated on creation; the
/// frequency check is not repeated.
pub(crate) fn cron_of(schedule: &ScheduleRecord) -> Result<CronSchedule, String> {
    let zone: Tz = schedule
        .timezone
        .parse()
        .map_err(|_| format!("unknown time zone {:?}", schedule.timezone))?;
    CronSchedule::parse(
        &schedule.cron,
        zone,
        schedule.start,
        schedule.end,
        TimeDelta::zero(),
    )
    .map_err(|error| error.to_string())
}

/// What an occurrence produced.
pub(crate) struct Fired {
    /// The instance created, if any (Pending, or Failed as missed).
    pub(crate) instance: Option<JobRecord>,
    /// The schedule's next occurrence, to tell the scheduler loop.
    pub(crate) next: Option<DateTime<Utc>>,
}

/// Handles the schedule's due occurrence(s) as of `now`.
pub(crate) fn fire(
    tx: &mut WriteTx<'_>,
    id: i64,
    now: DateTime<Utc>,
    policy: &DeliveryPolicy,
) -> Result<Option<Fired>, StoreError> {
    let Some(schedule) = tx.schedule_to_fire(id)? else {
        return Ok(None);
    };
    let Some(due) = schedule
        .next_run_at
        .filter(|at| *at <= now && schedule.active && !schedule.paused)
    else {
        return Ok(None);
    };
    let cron = match cron_of(&schedule) {
        Ok(cron) => cron,
        Err(reason) => {
            let reason = format!("stopped: its expression cannot be read any more: {reason}");
            tx.advance_schedule(id, due, None, now, Some(&reason))?;
            tx.record_schedule_event(id, Some(due), now, "ended", None, &reason)?;
            return Ok(Some(Fired {
                instance: None,
                next: None,
            }));
        }
    };
    // Everything from just before the due occurrence up to now: normally the due occurrence
    // alone; after downtime, every occurrence that was missed.
    let missed = catch_up(&cron, due - TimeDelta::microseconds(1), now);
    let occurrence = missed.latest_missed.unwrap_or(due);
    let next = missed.next;
    let ended = next.is_none().then_some("no further occurrence");
    let late = now - occurrence;

    if let Some(pending) = tx.pending_instance(id)? {
        let reason = format!(
            "occurrence {} skipped: instance {pending} is still pending for {} (one package at a time per schedule)",
            time(occurrence),
            match (&schedule.robot_address, &schedule.pool) {
                (_, Some(pool)) => format!("pool {pool}"),
                (address, None) => format!("robot {}", address.as_deref().unwrap_or("")),
            }
        );
        tx.advance_schedule(id, occurrence, next, now, ended)?;
        tx.record_schedule_event(id, Some(occurrence), now, "skipped", Some(pending), &reason)?;
        // Its last occurrence may be the one skipped: it ends all the same.
        if let Some(ended) = ended {
            tx.record_schedule_event(id, Some(occurrence), now, "ended", None, ended)?;
        }
        return Ok(Some(Fired {
            instance: None,
            next,
        }));
    }

    let mut reason = format!(
        "instance of schedule {id} for its occurrence at {}",
        time(occurrence)
    );
    if missed.missed > 1 {
        let count = if missed.missed_capped {
            format!("at least {}", missed.missed - 1)
        } else {
            (missed.missed - 1).to_string()
        };
        reason = format!(
            "catch-up run of schedule {id} for its occurrence at {}: {count} earlier occurrences were missed while the server was down, and a schedule catches up once",
            time(occurrence)
        );
    }
    if late > ON_TIME {
        reason.push_str(&format!(
            ", {:.3} s late",
            late.num_milliseconds() as f64 / 1000.0
        ));
    }
    let missed_reason = policy.misfire_grace.filter(|grace| late > *grace).map(|grace| {
        format!(
            "missed: the occurrence at {} came {:.3} s late, beyond the misfire grace of {:.3} s",
            time(occurrence),
            late.num_milliseconds() as f64 / 1000.0,
            grace.num_milliseconds() as f64 / 1000.0
        )
    });
    let instance = tx.create_instance(
        &schedule,
        occurrence,
        now,
        &reason,
        missed_reason.as_deref(),
    )?;
    // The history follows the change it tells of, so that events show the schedule after it.
    tx.advance_schedule(id, occurrence, next, now, ended)?;
    if let Some(why) = &missed_reason {
        tx.record_schedule_event(id, Some(occurrence), now, "missed", Some(instance.id), why)?;
    } else if missed.missed > 1 {
        tx.record_schedule_event(
            id,
            Some(occurrence),
            now,
            "catch_up",
            Some(instance.id),
            &reason,
        )?;
    }
    if let Some(ended) = ended {
        tx.record_schedule_event(id, Some(occurrence), now, "ended", None, ended)?;
    }
    Ok(Some(Fired {
        instance: Some(instance),
        next,
    }))
}

/// Resumes the paused schedule `id` from its first occurrence after `now`: the occurrences of
/// the paused time are not caught up. Inside the write, its row locked, so that the next
/// occurrence is computed from the row as it is.
pub(crate) fn resume(
    tx: &mut WriteTx<'_>,
    id: i64,
    now: DateTime<Utc>,
) -> Result<PauseOutcome, StoreError> {
    let Some(schedule) = tx.schedule_locked(id)? else {
        return Ok(PauseOutcome::NotFound);
    };
    // An expression that cannot be read any more has no next occurrence: it ends.
    let next = cron_of(&schedule)
        .ok()
        .and_then(|cron| cron.upcoming(now, 1).first().copied());
    tx.resume_schedule(&schedule, next, now)
}
