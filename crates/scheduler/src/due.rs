//! The due-job loop: reads what is due from a time-ordered source a window at a time and hands
//! it on at its moment, never before.
//!
//! The source (the database) is the queue. The loop keeps only the entries of the next
//! `lookahead` in memory, so a million pending jobs cost it nothing, and it learns of entries
//! added inside its window through [`Wakeup`], so a job created for "now" does not wait for the
//! next read. The clock is injected: production uses the wall clock, tests a manual one.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{mpsc, watch};

/// What is due: a job (its next sending, resend or deadline) or a recurring schedule (its next
/// occurrence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DueKind {
    Job,
    Schedule,
}

/// Something due at `at`, named by its kind and `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Due {
    pub at: DateTime<Utc>,
    pub kind: DueKind,
    pub id: i64,
}

impl Due {
    pub fn job(id: i64, at: DateTime<Utc>) -> Due {
        Due {
            at,
            kind: DueKind::Job,
            id,
        }
    }

    pub fn schedule(id: i64, at: DateTime<Utc>) -> Due {
        Due {
            at,
            kind: DueKind::Schedule,
            id,
        }
    }
}

/// The time source of the loop.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Where due entries come from and where they go.
pub trait DueSource: Send + Sync + 'static {
    type Error: std::fmt::Display + Send;

    /// At most `limit` entries due at or before `until`, earliest first.
    fn fetch(
        &self,
        until: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Due>, Self::Error>> + Send;

    /// Handles entries that are due (`at <= now`). The loop waits for it before it looks again,
    /// so what `fire` changes in the source is seen by the next `fetch`.
    fn fire(&self, due: Vec<Due>, now: DateTime<Utc>) -> impl Future<Output = ()> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueLoopConfig {
    /// How far ahead the loop reads.
    pub lookahead: Duration,
    /// Entries read at most per `fetch`.
    pub fetch_limit: usize,
    /// Longest sleep: the loop looks at the clock at least this often, so a clock that jumps
    /// is noticed within it.
    pub max_sleep: Duration,
    /// Pause after a failed `fetch`.
    pub retry: Duration,
    /// Entries kept in memory at most; beyond it the window shrinks.
    pub max_window: usize,
}

impl Default for DueLoopConfig {
    fn default() -> Self {
        DueLoopConfig {
            lookahead: Duration::from_secs(2),
            fetch_limit: 20_000,
            max_sleep: Duration::from_secs(1),
            retry: Duration::from_secs(1),
            max_window: 200_000,
        }
    }
}

/// Tells the loop about an entry that became due at `at`: a new job, a forced one, a resend.
/// Entries beyond the loop's window are not sent: the loop reads them when it gets there.
#[derive(Debug, Clone)]
pub struct Wakeup {
    sender: mpsc::UnboundedSender<Due>,
    horizon: Arc<AtomicI64>,
}

impl Wakeup {
    pub fn notify(&self, due: Due) {
        if due.at.timestamp_micros() <= self.horizon.load(Ordering::Acquire) {
            // The loop is gone only at shutdown.
            let _ = self.sender.send(due);
        }
    }
}

/// When the loop last looked at the clock, for health checks.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    pub fn last(&self) -> Option<DateTime<Utc>> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            micros => DateTime::from_timestamp_micros(micros),
        }
    }

    fn beat(&self, now: DateTime<Utc>) {
        self.0.store(now.timestamp_micros(), Ordering::Release);
    }
}

/// The loop, ready to run.
pub struct DueLoop<S, C> {
    source: S,
    clock: C,
    config: DueLoopConfig,
    receiver: mpsc::UnboundedReceiver<Due>,
    horizon: Arc<AtomicI64>,
    heartbeat: Heartbeat,
}

impl<S: DueSource, C: Clock> DueLoop<S, C> {
    pub fn new(source: S, clock: C, config: DueLoopConfig) -> (DueLoop<S, C>, Wakeup, Heartbeat) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let horizon = Arc::new(AtomicI64::new(i64::MIN));
        let heartbeat = Heartbeat::default();
        let wakeup = Wakeup {
            sender,
            horizon: Arc::clone(&horizon),
        };
        let due_loop = DueLoop {
            source,
            clock,
            config,
            receiver,
            horizon,
            heartbeat: heartbeat.clone(),
        };
        (due_loop, wakeup, heartbeat)
    }

    /// Runs until `stop` turns true (or its sender is dropped).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let lookahead = to_delta(self.config.lookahead);
        let mut window: BTreeSet<Due> = BTreeSet::new();
        // Every entry due at or before `complete_until` is in `window` (or was fired).
        let mut complete_until = DateTime::<Utc>::MIN_UTC;
        loop {
            if *stop.borrow() {
                return;
            }
            let now = self.clock.now();
            self.heartbeat.beat(now);
            if now >= complete_until {
                let until = now + lookahead;
                // Published before reading, so that whatever commits after the read and falls
                // inside the window is announced through `Wakeup`.
                self.horizon
                    .store(until.timestamp_micros(), Ordering::Release);
                match self.source.fetch(until, self.config.fetch_limit).await {
                    Ok(rows) => {
                        log::debug!("read {} due entries up to {until:?}", rows.len());
                        let full = rows.len() >= self.config.fetch_limit;
                        complete_until = match (full, rows.last()) {
                            // Rows after the last one read may share its time: only what is
                            // strictly before it is known to be complete.
                            (true, Some(last)) => last.at - TimeDelta::microseconds(1),
                            _ => until,
                        };
                        window.extend(rows);
                    }
                    Err(error) => {
                        log::error!("cannot read due jobs: {error}; retrying");
                        self.pause(self.config.retry, &mut stop).await;
                        continue;
                    }
                }
            }
            while let Ok(due) = self.receiver.try_recv() {
                window.insert(due);
            }
            self.bound(&mut window, &mut complete_until);

            let now = self.clock.now();
            let due = take_due(&mut window, now);
            if !due.is_empty() {
                self.source.fire(due.into_iter().collect(), now).await;
                continue;
            }

            let next = window
                .first()
                .map_or(complete_until, |first| first.at.min(complete_until));
            let wait = (next - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.config.max_sleep);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                Some(due) = self.receiver.recv() => { window.insert(due); }
                _ = stop.changed() => {}
            }
        }
    }

    /// Keeps the window within `max_window` entries by forgetting the latest ones, which the
    /// next read finds again.
    fn bound(&self, window: &mut BTreeSet<Due>, complete_until: &mut DateTime<Utc>) {
        while window.len() > self.config.max_window {
            let Some(last) = window.pop_last() else {
                return;
            };
            let before = last.at - TimeDelta::microseconds(1);
            if before < *complete_until {
                *complete_until = before;
                self.horizon
                    .store(before.timestamp_micros(), Ordering::Release);
            }
        }
    }

    async fn pause(&self, duration: Duration, stop: &mut watch::Receiver<bool>) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Removes and returns the entries at or before `now`, to the nanosecond. The clock is finer
/// than the stored microseconds: an entry taken a fraction of a microsecond early is refused by
/// the source as not yet due, and then waits for the next read, a whole lookahead later (that
/// was the 1-2 s outlier of the P6 benchmark).
fn take_due(window: &mut BTreeSet<Due>, now: DateTime<Utc>) -> BTreeSet<Due> {
    let later = window.split_off(&Due::job(i64::MIN, now + TimeDelta::nanoseconds(1)));
    std::mem::replace(window, later)
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_taken_at_its_moment_not_a_nanosecond_before() {
        let at = DateTime::from_timestamp_micros(1_795_695_779_297_333).unwrap();
        let entries = [Due::job(1, at), Due::schedule(2, at), Due::job(3, at)];
        let mut window = BTreeSet::from(entries);
        for early in [1_000, 500, 1] {
            let now = at - TimeDelta::nanoseconds(early);
            assert!(take_due(&mut window, now).is_empty(), "{early} ns early");
        }
        assert_eq!(take_due(&mut window, at), BTreeSet::from(entries));
        assert!(window.is_empty());
    }
}
