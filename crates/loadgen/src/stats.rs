//! Percentiles and summaries of samples (latencies in microseconds, counts per robot).

use serde::Serialize;

/// The nearest-rank percentile `p` (0 to 100) of `sorted` (ascending): the smallest sample such
/// that at least `p` % of the samples are less than or equal to it. `None` when empty.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // The small subtraction keeps float noise (99.9 % of 1,000 = 999.0000000000001) from
    // pushing the rank one too far.
    let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Order statistics of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min: i64,
    pub p50: i64,
    pub p90: i64,
    pub p99: i64,
    pub p999: i64,
    pub max: i64,
    pub mean: f64,
}

impl Summary {
    /// `None` when there are no samples.
    pub fn of(mut samples: Vec<i64>) -> Option<Summary> {
        samples.sort_unstable();
        Summary::of_sorted(&samples)
    }

    pub fn of_sorted(sorted: &[i64]) -> Option<Summary> {
        let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else {
            return None;
        };
        let sum: i128 = sorted.iter().map(|&v| i128::from(v)).sum();
        Some(Summary {
            count: sorted.len(),
            min,
            p50: percentile(sorted, 50.0)?,
            p90: percentile(sorted, 90.0)?,
            p99: percentile(sorted, 99.0)?,
            p999: percentile(sorted, 99.9)?,
            max,
            mean: sum as f64 / sorted.len() as f64,
        })
    }
}

/// Events per second; 0 when no time passed.
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(50));
        assert_eq!(percentile(&sorted, 99.0), Some(99));
        assert_eq!(percentile(&sorted, 99.9), Some(100));
        assert_eq!(percentile(&sorted, 100.0), Some(100));
        assert_eq!(percentile(&sorted, 0.0), Some(1));
        assert_eq!(percentile(&sorted, 1.0), Some(1));
        assert_eq!(percentile(&sorted, 1.5), Some(2));
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 51.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3], 99.0), Some(3));
        // Out-of-range p is clamped.
        assert_eq!(percentile(&[1, 2, 3], 150.0), Some(3));
        assert_eq!(percentile(&[1, 2, 3], -5.0), Some(1));
    }

    #[test]
    fn summary_sorts_and_handles_negative_samples() {
        let summary = Summary::of(vec![5, -3, 10, 0, 2]).unwrap();
        assert_eq!(summary.count, 5);
        assert_eq!(summary.min, -3);
        assert_eq!(summary.max, 10);
        assert_eq!(summary.p50, 2);
        assert_eq!(summary.p99, 10);
        assert!((summary.mean - 2.8).abs() < 1e-9);
        assert_eq!(Summary::of(Vec::new()), None);
    }

    #[test]
    fn one_in_a_thousand_outlier() {
        let mut samples = vec![1_000; 999];
        samples.push(50_000);
        let summary = Summary::of(samples).unwrap();
        assert_eq!(summary.p99, 1_000);
        assert_eq!(summary.p999, 1_000);
        assert_eq!(summary.max, 50_000);
    }

    #[test]
    fn rates() {
        assert_eq!(rate(100, 2.0), 50.0);
        assert_eq!(rate(100, 0.0), 0.0);
    }
}
