#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Properties that must hold for every expression, zone and instant.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use proptest::prelude::*;
use rpa_scheduler::{CronSchedule, Tz, catch_up, resolve_local};

const ZONES: [Tz; 6] = [
    Tz::UTC,
    Tz::Europe__Berlin,
    Tz::America__New_York,
    Tz::Australia__Lord_Howe,
    Tz::Australia__Sydney,
    Tz::Asia__Kolkata,
];

const EXPRESSIONS: [&str; 10] = [
    "30 2 * * *",
    "*/15 * * * *",
    "0,15,30,45 1-3 * * *",
    "0 * * * *",
    "*/7 * * * * *",
    "0 0 1 * MON",
    "0 9 * * 1-5",
    "0 0 29 2 *",
    "@daily",
    "0 2,3 * * 0",
];

/// Instants from 2025 to 2028, whole seconds or not.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (1_735_689_600i64..1_861_920_000, 0u32..1_000_000_000).prop_map(|(seconds, nanos)| {
        let nanos = if nanos % 2 == 0 { 0 } else { nanos };
        DateTime::from_timestamp(seconds, nanos).unwrap()
    })
}

fn schedule(expression: &str, zone: Tz) -> CronSchedule {
    CronSchedule::parse(expression, zone, None, None, TimeDelta::seconds(1)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn occurrences_increase_strictly_and_chain(
        expression in proptest::sample::select(EXPRESSIONS.to_vec()),
        zone in proptest::sample::select(ZONES.to_vec()),
        t in instant(),
    ) {
        let schedule = schedule(expression, zone);
        let upcoming = schedule.upcoming(t, 12);
        prop_assert_eq!(upcoming.len(), 12);
        let mut previous = t;
        for occurrence in &upcoming {
            prop_assert!(*occurrence > previous);
            prop_assert_eq!(schedule.next_after(previous), Some(*occurrence));
            prop_assert_eq!(schedule.previous_at_or_before(*occurrence), Some(*occurrence));
            previous = *occurrence;
        }
    }

    #[test]
    fn previous_and_next_bracket_any_instant(
        expression in proptest::sample::select(EXPRESSIONS.to_vec()),
        zone in proptest::sample::select(ZONES.to_vec()),
        t in instant(),
    ) {
        let schedule = schedule(expression, zone);
        let next = schedule.next_after(t).unwrap();
        let previous = schedule.previous_at_or_before(t).unwrap();
        prop_assert!(previous <= t && t < next);
        prop_assert_eq!(schedule.next_after(previous), Some(next));
    }

    #[test]
    fn catch_up_agrees_with_iteration(
        expression in proptest::sample::select(EXPRESSIONS.to_vec()),
        zone in proptest::sample::select(ZONES.to_vec()),
        last_fire in instant(),
        gap_minutes in 0i64..20_000,
    ) {
        let schedule = schedule(expression, zone);
        let now = last_fire + TimeDelta::minutes(gap_minutes);
        let result = catch_up(&schedule, last_fire, now);
        let missed: Vec<_> = schedule
            .occurrences_after(last_fire)
            .take_while(|occurrence| *occurrence <= now)
            .take(10_001)
            .collect();
        prop_assert_eq!(result.missed_capped, missed.len() > 10_000);
        if !result.missed_capped {
            prop_assert_eq!(result.missed, missed.len() as u64);
        }
        prop_assert_eq!(result.latest_missed, schedule.previous_at_or_before(now).filter(|p| *p > last_fire));
        prop_assert_eq!(result.next, schedule.next_after(now));
    }

    #[test]
    fn resolve_local_is_monotone(
        zone in proptest::sample::select(ZONES.to_vec()),
        t in instant(),
        step in 1i64..7_200,
    ) {
        let first: NaiveDateTime = t.naive_utc();
        let second = first + TimeDelta::seconds(step);
        prop_assert!(resolve_local(zone, first) <= resolve_local(zone, second));
        // An instant's own wall time maps back to it, or to the earlier reading of a
        // repeated hour.
        let wall = t.with_timezone(&zone).naive_local();
        prop_assert!(resolve_local(zone, wall) <= t);
    }
}
