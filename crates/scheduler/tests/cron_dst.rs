#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Daylight saving on recurring schedules: exact UTC instants around every transition the
//! contract names (Europe/Berlin and America/New_York, 2026 and 2027).

use chrono::{DateTime, TimeDelta, Utc};
use rpa_scheduler::{CronSchedule, Tz};

const BERLIN: Tz = Tz::Europe__Berlin;
const NEW_YORK: Tz = Tz::America__New_York;

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn schedule(expression: &str, zone: Tz) -> CronSchedule {
    CronSchedule::parse(expression, zone, None, None, TimeDelta::seconds(1)).unwrap()
}

fn upcoming(expression: &str, zone: Tz, from: &str, n: usize) -> Vec<String> {
    schedule(expression, zone)
        .upcoming(utc(from), n)
        .iter()
        .map(|instant| instant.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .collect()
}

#[test]
fn daily_runs_around_every_transition() {
    let cases: [(&str, Tz, &str, [&str; 3]); 10] = [
        // Berlin spring forward (02:00 CET -> 03:00 CEST = 01:00 UTC): 02:30 runs at the jump.
        (
            "30 2 * * *",
            BERLIN,
            "2026-03-28T00:00:00Z",
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
            ],
        ),
        (
            "30 2 * * *",
            BERLIN,
            "2027-03-27T00:00:00Z",
            [
                "2027-03-27T01:30:00Z",
                "2027-03-28T01:00:00Z",
                "2027-03-29T00:30:00Z",
            ],
        ),
        // Berlin fall back (03:00 CEST -> 02:00 CET = 01:00 UTC): 02:30 runs once, at CEST.
        (
            "30 2 * * *",
            BERLIN,
            "2026-10-24T00:00:00Z",
            [
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
            ],
        ),
        (
            "30 2 * * *",
            BERLIN,
            "2027-10-30T00:00:00Z",
            [
                "2027-10-30T00:30:00Z",
                "2027-10-31T00:30:00Z",
                "2027-11-01T01:30:00Z",
            ],
        ),
        // New York spring forward (02:00 EST -> 03:00 EDT = 07:00 UTC).
        (
            "30 2 * * *",
            NEW_YORK,
            "2026-03-07T00:00:00Z",
            [
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
            ],
        ),
        (
            "30 2 * * *",
            NEW_YORK,
            "2027-03-13T00:00:00Z",
            [
                "2027-03-13T07:30:00Z",
                "2027-03-14T07:00:00Z",
                "2027-03-15T06:30:00Z",
            ],
        ),
        // New York fall back (02:00 EDT -> 01:00 EST = 06:00 UTC): 01:30 runs once, at EDT.
        (
            "30 1 * * *",
            NEW_YORK,
            "2026-10-31T00:00:00Z",
            [
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
            ],
        ),
        (
            "30 1 * * *",
            NEW_YORK,
            "2027-11-06T00:00:00Z",
            [
                "2027-11-06T05:30:00Z",
                "2027-11-07T05:30:00Z",
                "2027-11-08T06:30:00Z",
            ],
        ),
        // The 6-field form follows the same rules.
        (
            "15 30 2 * * *",
            BERLIN,
            "2027-03-27T00:00:00Z",
            [
                "2027-03-27T01:30:15Z",
                "2027-03-28T01:00:00Z",
                "2027-03-29T00:30:15Z",
            ],
        ),
        // A time just after the gap is unaffected.
        (
            "0 3 * * *",
            BERLIN,
            "2026-03-28T00:00:00Z",
            [
                "2026-03-28T02:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T01:00:00Z",
            ],
        ),
    ];
    for (expression, zone, from, expected) in cases {
        assert_eq!(
            upcoming(expression, zone, from, 3),
            expected,
            "`{expression}` in {zone} from {from}"
        );
    }
}

#[test]
fn several_gap_times_collapse_into_one_run_at_the_jump() {
    // 02:00, 02:15, 02:30, 02:45 do not exist on 29 March 2026 in Berlin.
    assert_eq!(
        upcoming("0,15,30,45 2 * * *", BERLIN, "2026-03-28T23:00:00Z", 3),
        [
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:00:00Z",
            "2026-03-30T00:15:00Z"
        ]
    );
    // 02:00 (in the gap) and 03:00 (the jump itself) are the same run.
    assert_eq!(
        upcoming("0 2,3 * * *", BERLIN, "2027-03-27T23:00:00Z", 3),
        [
            "2027-03-28T01:00:00Z",
            "2027-03-29T00:00:00Z",
            "2027-03-29T01:00:00Z"
        ]
    );
    assert_eq!(
        upcoming("0,30 2 * * *", NEW_YORK, "2027-03-14T00:00:00Z", 2),
        ["2027-03-14T07:00:00Z", "2027-03-15T06:00:00Z"]
    );
}

#[test]
fn a_repeated_hour_runs_once() {
    // `*/15` fires 4 times in the repeated hour, not 8: 02:00..02:45 CEST, then 03:00 CET.
    let quarter = schedule("*/15 * * * *", BERLIN);
    let runs: Vec<_> = quarter
        .occurrences_after(utc("2026-10-24T23:59:00Z"))
        .take_while(|instant| *instant <= utc("2026-10-25T02:00:00Z"))
        .collect();
    assert_eq!(
        runs,
        [
            utc("2026-10-25T00:00:00Z"),
            utc("2026-10-25T00:15:00Z"),
            utc("2026-10-25T00:30:00Z"),
            utc("2026-10-25T00:45:00Z"),
            utc("2026-10-25T02:00:00Z"),
        ]
    );
    // Asked during the second pass of the hour, the next run is 03:00 CET.
    assert_eq!(
        quarter.next_after(utc("2026-10-25T01:10:00Z")),
        Some(utc("2026-10-25T02:00:00Z"))
    );
    assert_eq!(
        quarter.previous_at_or_before(utc("2026-10-25T01:10:00Z")),
        Some(utc("2026-10-25T00:45:00Z"))
    );
    // Hourly: 02:00 runs at its CEST instant; the CET repeat does not run again.
    assert_eq!(
        upcoming("0 * * * *", BERLIN, "2026-10-24T23:30:00Z", 3),
        [
            "2026-10-25T00:00:00Z",
            "2026-10-25T02:00:00Z",
            "2026-10-25T03:00:00Z"
        ]
    );
    // New York, 2027: 01:00..01:45 EDT, then 02:00 EST.
    assert_eq!(
        upcoming("*/15 1,2 * * *", NEW_YORK, "2027-11-07T04:59:00Z", 5),
        [
            "2027-11-07T05:00:00Z",
            "2027-11-07T05:15:00Z",
            "2027-11-07T05:30:00Z",
            "2027-11-07T05:45:00Z",
            "2027-11-07T07:00:00Z"
        ]
    );
}

#[test]
fn per_minute_schedule_through_the_gap_has_no_duplicates() {
    let minutely = schedule("* * * * *", BERLIN);
    let runs = minutely.upcoming(utc("2026-03-29T00:58:00Z"), 4);
    // 01:59 CET = 00:59Z, then the whole gap is the single jump run at 01:00Z, then 03:01 CEST.
    assert_eq!(
        runs,
        [
            utc("2026-03-29T00:59:00Z"),
            utc("2026-03-29T01:00:00Z"),
            utc("2026-03-29T01:01:00Z"),
            utc("2026-03-29T01:02:00Z"),
        ]
    );
}

#[test]
fn half_hour_daylight_saving_zone() {
    // Lord Howe Island moves its clocks by 30 minutes (02:00 +10:30 -> 02:30 +11:00 on
    // 4 October 2026, 15:30 UTC the day before).
    let zone = Tz::Australia__Lord_Howe;
    assert_eq!(
        upcoming("15 2 * * *", zone, "2026-10-03T00:00:00Z", 2),
        ["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"]
    );
}

#[test]
fn next_after_is_strict_and_chains() {
    let daily = schedule("30 2 * * *", BERLIN);
    let jump = utc("2027-03-28T01:00:00Z");
    assert_eq!(daily.next_after(jump - TimeDelta::seconds(1)), Some(jump));
    assert_eq!(
        daily.next_after(jump),
        Some(utc("2027-03-29T00:30:00Z")),
        "the jump run is not repeated"
    );
    let mut t = utc("2026-01-01T00:00:00Z");
    let listed = daily.upcoming(t, 800);
    for expected in listed {
        let next = daily.next_after(t).unwrap();
        assert_eq!(next, expected);
        t = next;
    }
}
