//! Alerts the database cannot raise by itself: a robot offline for longer than
//! `--alert-robot-offline-after` is told once per outage as `robot.unreachable`. (`job.overdue`
//! needs no task: the scheduler wakes for it, see rpa-store's sending.rs.)
//!
//! Robots are few, so every few seconds one conditional update finds those whose outage passed
//! the limit and not told yet; with several instances, whichever updates a robot's row tells.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::app::{App, delta};
use crate::logging::Untrusted;

/// The most an outage is told late, beyond the limit itself ...
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// ... and the most often the robots are looked at.
const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let limit = app.config.alert_robot_offline_after;
    if limit.is_zero() {
        return;
    }
    let reason = format!("offline for more than {}", spoken(limit));
    let mut ticker = tokio::time::interval(check_interval(limit));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let now = Utc::now();
        let horizon = now - delta(limit);
        let reason = reason.clone();
        match app
            .db
            .write(move |tx| tx.alert_unreachable_robots(horizon, now, &reason))
            .await
        {
            Ok(robots) => {
                for address in robots {
                    log::info!(
                        "robot {} unreachable: offline for more than {}",
                        Untrusted(&address),
                        spoken(limit)
                    );
                }
            }
            Err(error) => log::warn!("cannot look for unreachable robots: {error}"),
        }
    }
}

/// A tenth of the limit, within 1 to 5 s.
fn check_interval(limit: Duration) -> Duration {
    (limit / 10).clamp(MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL)
}

/// `5 min`, `90 s`, `2 h`, `1 d`: for a person reading the event.
fn spoken(duration: Duration) -> String {
    let secs = duration.as_secs();
    if u128::from(secs) * 1000 != duration.as_millis() || secs == 0 {
        return format!("{} ms", duration.as_millis());
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("min", 60)] {
        if secs.is_multiple_of(size) {
            return format!("{} {unit}", secs / size);
        }
    }
    format!("{secs} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_told_as_a_person_says_it() {
        assert_eq!(spoken(Duration::from_secs(300)), "5 min");
        assert_eq!(spoken(Duration::from_secs(90)), "90 s");
        assert_eq!(spoken(Duration::from_secs(7_200)), "2 h");
        assert_eq!(spoken(Duration::from_secs(86_400)), "1 d");
        assert_eq!(spoken(Duration::from_millis(1_500)), "1500 ms");
    }

    #[test]
    fn robots_are_looked_at_every_tenth_of_the_limit_within_bounds() {
        assert_eq!(check_interval(Duration::from_secs(300)), MAX_CHECK_INTERVAL);
        assert_eq!(
            check_interval(Duration::from_secs(30)),
            Duration::from_secs(3)
        );
        assert_eq!(check_interval(Duration::from_secs(1)), MIN_CHECK_INTERVAL);
    }
}
