#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The due loop against an in-memory source and a clock that follows tokio's paused time, so
//! the tests run in milliseconds whatever the schedule says.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rpa_scheduler::{Clock, Due, DueLoop, DueLoopConfig, DueSource};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Clone)]
struct TokioClock {
    base: DateTime<Utc>,
    started: Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + TimeDelta::from_std(self.started.elapsed()).unwrap()
    }
}

/// What fired, and when.
type Fired = Arc<Mutex<Vec<(Due, DateTime<Utc>)>>>;

#[derive(Clone, Default)]
struct Source {
    pending: Arc<Mutex<BTreeSet<Due>>>,
    fired: Fired,
    fetches: Arc<Mutex<usize>>,
}

impl DueSource for Source {
    type Error = String;

    async fn fetch(&self, until: DateTime<Utc>, limit: usize) -> Result<Vec<Due>, String> {
        *self.fetches.lock().unwrap() += 1;
        Ok(self
            .pending
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.at <= until)
            .take(limit)
            .copied()
            .collect())
    }

    async fn fire(&self, due: Vec<Due>, now: DateTime<Utc>) {
        let mut pending = self.pending.lock().unwrap();
        let mut fired = self.fired.lock().unwrap();
        for d in due {
            if pending.remove(&d) {
                fired.push((d, now));
            }
        }
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap()
}

fn start(
    source: &Source,
    config: DueLoopConfig,
) -> (rpa_scheduler::Wakeup, watch::Sender<bool>, TokioClock) {
    let clock = TokioClock {
        base: t0(),
        started: Instant::now(),
    };
    let (due_loop, wakeup, _heartbeat) = DueLoop::new(source.clone(), clock.clone(), config);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(due_loop.run(stopped));
    (wakeup, stop, clock)
}

fn at(seconds: i64, id: i64) -> Due {
    Due::job(id, t0() + TimeDelta::seconds(seconds))
}

#[tokio::test(start_paused = true)]
async fn entries_fire_in_order_at_their_time_and_never_before() {
    let source = Source::default();
    source
        .pending
        .lock()
        .unwrap()
        .extend([at(5, 1), at(1, 2), at(3600, 3), at(1, 4)]);
    let (_wakeup, stop, _clock) = start(&source, DueLoopConfig::default());
    tokio::time::sleep(Duration::from_secs(4000)).await;
    let fired = source.fired.lock().unwrap().clone();
    assert_eq!(
        fired.iter().map(|(d, _)| d.id).collect::<Vec<_>>(),
        [2, 4, 1, 3]
    );
    for (due, when) in fired {
        assert!(when >= due.at, "{due:?} fired early at {when}");
        assert!(when - due.at < TimeDelta::milliseconds(5), "{due:?} late");
    }
    stop.send(true).unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_entry_added_inside_the_window_is_not_kept_waiting_for_the_next_read() {
    let source = Source::default();
    let (wakeup, stop, _clock) = start(&source, DueLoopConfig::default());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reads = *source.fetches.lock().unwrap();
    let due = at(1, 7);
    source.pending.lock().unwrap().insert(due);
    wakeup.notify(due);
    tokio::time::sleep(Duration::from_millis(950)).await;
    let fired = source.fired.lock().unwrap().clone();
    assert_eq!(fired.len(), 1);
    assert!(fired[0].1 - due.at < TimeDelta::milliseconds(5));
    assert_eq!(
        *source.fetches.lock().unwrap(),
        reads,
        "no extra read was needed"
    );
    stop.send(true).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_backlog_larger_than_one_read_is_worked_through() {
    let source = Source::default();
    source
        .pending
        .lock()
        .unwrap()
        .extend((0..1000).map(|id| at(-60, id)));
    let config = DueLoopConfig {
        fetch_limit: 64,
        ..DueLoopConfig::default()
    };
    let (_wakeup, stop, _clock) = start(&source, config);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(source.fired.lock().unwrap().len(), 1000);
    stop.send(true).unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_window_stays_bounded_and_nothing_is_lost() {
    let source = Source::default();
    let config = DueLoopConfig {
        max_window: 10,
        ..DueLoopConfig::default()
    };
    let (wakeup, stop, _clock) = start(&source, config);
    tokio::time::sleep(Duration::from_millis(10)).await;
    for id in 0..100 {
        let due = at(1, id);
        source.pending.lock().unwrap().insert(due);
        wakeup.notify(due);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(source.fired.lock().unwrap().len(), 100);
    stop.send(true).unwrap();
}
