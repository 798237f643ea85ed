//! Which jobs arrived how often, for the last [`DELIVERY_HISTORY`] job ids.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

/// How many job ids a robot remembers for duplicate detection. The server only resends
/// recent jobs, so a bounded window is enough and keeps a long-running robot's memory flat.
pub const DELIVERY_HISTORY: usize = 10_000;

#[derive(Debug)]
struct Delivery {
    /// Arrivals not cancelled by a decline.
    count: u32,
    package_name: String,
    /// Sequence number of the latest arrival, to find "the most recent package".
    last_arrival: u64,
}

#[derive(Debug)]
pub(crate) struct History {
    jobs: HashMap<i64, Delivery>,
    /// Job ids in order of first arrival; the oldest is forgotten first.
    order: VecDeque<i64>,
    capacity: usize,
    arrivals: u64,
}

impl History {
    pub(crate) fn new(capacity: usize) -> History {
        History {
            jobs: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            arrivals: 0,
        }
    }

    pub(crate) fn record(&mut self, job_id: i64, package_name: &str) {
        self.arrivals += 1;
        match self.jobs.entry(job_id) {
            Entry::Occupied(mut entry) => {
                let delivery = entry.get_mut();
                delivery.count = delivery.count.saturating_add(1);
                delivery.last_arrival = self.arrivals;
                package_name.clone_into(&mut delivery.package_name);
            }
            Entry::Vacant(entry) => {
                entry.insert(Delivery {
                    count: 1,
                    package_name: package_name.to_owned(),
                    last_arrival: self.arrivals,
                });
                self.order.push_back(job_id);
                if self.order.len() > self.capacity
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.jobs.remove(&oldest);
                }
            }
        }
    }

    pub(crate) fn is_duplicate(&self, job_id: i64) -> bool {
        self.jobs
            .get(&job_id)
            .is_some_and(|delivery| delivery.count > 1)
    }

    /// The robot declined a package: the server will resend the most recent package with that
    /// name (any name when `""`), and that resend is expected, not a duplicate.
    pub(crate) fn declined(&mut self, package_name: &str) {
        let declined = self
            .jobs
            .values_mut()
            .filter(|delivery| {
                delivery.count > 0
                    && (package_name.is_empty() || delivery.package_name == package_name)
            })
            .max_by_key(|delivery| delivery.last_arrival);
        if let Some(delivery) = declined {
            delivery.count -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_arrival_is_a_duplicate() {
        let mut history = History::new(10);
        history.record(7, "p");
        assert!(!history.is_duplicate(7));
        history.record(7, "p");
        assert!(history.is_duplicate(7));
        assert!(!history.is_duplicate(8));
    }

    #[test]
    fn oldest_job_is_forgotten() {
        let mut history = History::new(2);
        for job_id in [1, 2, 3] {
            history.record(job_id, "p");
        }
        history.record(1, "p");
        assert!(!history.is_duplicate(1));
        history.record(3, "p");
        assert!(history.is_duplicate(3));
        assert_eq!(history.jobs.len(), 2);
        assert_eq!(history.order.len(), 2);
    }

    #[test]
    fn a_declined_package_may_come_back() {
        let mut history = History::new(10);
        history.record(1, "a");
        history.record(2, "b");
        history.record(3, "a");
        history.declined("a");
        history.record(3, "a");
        assert!(!history.is_duplicate(3));
        history.declined("");
        history.record(3, "a");
        assert!(!history.is_duplicate(3));
        history.record(3, "a");
        assert!(history.is_duplicate(3));
        // Nothing named "c" arrived: nothing changes.
        history.declined("c");
        history.record(2, "b");
        assert!(history.is_duplicate(2));
    }
}
