//! Counters the server keeps for `GET /metrics`. Plain atomics: cheap enough for every frame.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (milliseconds) of the lateness histogram: how long after its due moment a
/// sending was handed to the robot's connection.
pub(crate) const LATENESS_BUCKETS_MS: [u64; 12] =
    [1, 2, 5, 10, 25, 50, 100, 250, 1_000, 5_000, 30_000, 300_000];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections_opened: AtomicU64,
    pub(crate) registrations: AtomicU64,
    pub(crate) metadata_declined: AtomicU64,
    pub(crate) robot_messages: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    pub(crate) sendings_confirmed: AtomicU64,
    pub(crate) resends: AtomicU64,
    pub(crate) declines: AtomicU64,
    pub(crate) acks: AtomicU64,
    pub(crate) reports: AtomicU64,
    pub(crate) triggers_accepted: AtomicU64,
    pub(crate) triggers_rejected: AtomicU64,
    pub(crate) slow_robots_closed: AtomicU64,
    /// Open event streams (a gauge).
    pub(crate) event_stream_subscribers: AtomicU64,
    pub(crate) event_streams_slow_closed: AtomicU64,
    /// Webhook attempts answered 2xx, failed, and events skipped (missed while disabled).
    pub(crate) webhook_delivered: AtomicU64,
    pub(crate) webhook_failed: AtomicU64,
    pub(crate) webhook_skipped: AtomicU64,
    lateness_buckets: [AtomicU64; LATENESS_BUCKETS_MS.len()],
    lateness_count: AtomicU64,
    lateness_sum_micros: AtomicU64,
    /// Pool jobs: from due to handed to a robot, the wait for a free robot included.
    pub(crate) pool_assignment: Histogram,
}

/// A histogram over [`LATENESS_BUCKETS_MS`].
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; LATENESS_BUCKETS_MS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, micros: i64) {
        let micros = u64::try_from(micros).unwrap_or(0);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        for (bound, count) in LATENESS_BUCKETS_MS.iter().zip(&self.buckets) {
            if micros <= bound * 1000 {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// (cumulative bucket counts, count, sum in seconds)
    pub(crate) fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        (
            self.buckets
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            self.count.load(Ordering::Relaxed),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub(crate) fn observe_lateness(&self, micros: i64) {
        let micros = u64::try_from(micros).unwrap_or(0);
        self.lateness_count.fetch_add(1, Ordering::Relaxed);
        self.lateness_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
        for (bound, count) in LATENESS_BUCKETS_MS.iter().zip(&self.lateness_buckets) {
            if micros <= bound * 1000 {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// (cumulative bucket counts, count, sum in seconds)
    pub(crate) fn lateness(&self) -> (Vec<u64>, u64, f64) {
        (
            self.lateness_buckets
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            self.lateness_count.load(Ordering::Relaxed),
            self.lateness_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}
