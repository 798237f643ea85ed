//! The server's `GET /metrics` (Prometheus text format), read into a map of series.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rpa_testkit::HttpClient;

/// Series by their full name, labels included as written: `rpa_jobs{status="Pending"}`.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub HashMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut series = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The value follows the last space (labels hold no spaces here; a timestamp is
            // never written by this server).
            if let Some((name, value)) = line.rsplit_once(' ')
                && let Ok(value) = value.parse::<f64>()
            {
                series.insert(name.trim().to_owned(), value);
            }
        }
        Metrics(series)
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }

    /// A series as a count (0 when absent).
    pub fn count(&self, name: &str) -> u64 {
        self.get(name).map_or(0, |v| v.max(0.0) as u64)
    }

    /// `rpa_jobs{status="..."}`.
    pub fn jobs(&self, status: &str) -> u64 {
        self.count(&format!("rpa_jobs{{status=\"{status}\"}}"))
    }

    pub fn robots_connected(&self) -> u64 {
        self.count("rpa_robots_connected")
    }

    pub fn connections_open(&self) -> u64 {
        self.count("rpa_connections_open")
    }
}

/// The upper bound (in the histogram's unit) of the bucket holding quantile `q` (0 to 1) of
/// the observations made between `before` and `after`; `None` without observations, infinity
/// when it lies beyond the last bucket.
pub fn histogram_quantile(before: &Metrics, after: &Metrics, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = after
        .0
        .iter()
        .filter_map(|(series, value)| {
            let bound = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, value - before.get(series).unwrap_or(0.0)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let wanted = (q * total).max(1e-9);
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= wanted - 1e-9)
        .map(|(bound, _)| *bound)
}

/// How long the server serves its counts of robots and of jobs by status again before it counts
/// anew (docs/SECURITY.md: `GET /metrics` counts at most once every 5 s).
pub const COUNTS_FRESH_FOR: Duration = Duration::from_secs(5);

/// The metrics with counts made after `last_fetch`, the moment just after this client's last
/// scrape: waits until any counts served then have expired, so that a run shorter than
/// [`COUNTS_FRESH_FOR`] is not judged by the counts from before it.
pub async fn fetch_counted_after(client: &mut HttpClient, last_fetch: Instant) -> Result<Metrics> {
    let fresh_at = last_fetch + COUNTS_FRESH_FOR + Duration::from_millis(100);
    tokio::time::sleep_until(fresh_at.into()).await;
    fetch(client).await
}

pub async fn fetch(client: &mut HttpClient) -> Result<Metrics> {
    let answer = client.get("/metrics").await?;
    if answer.status != 200 {
        bail!("GET /metrics answered {}: {}", answer.status, answer.text());
    }
    Ok(Metrics::parse(&String::from_utf8_lossy(&answer.body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gauges_counters_and_labels() {
        let text = "# HELP rpa_robots_connected Robots.\n# TYPE rpa_robots_connected gauge\nrpa_robots_connected 19000\nrpa_jobs{status=\"Pending\"} 12\nrpa_jobs{status=\"Succeeded\"} 3\nrpa_delivery_lateness_seconds_bucket{le=\"0.001\"} 5\nrpa_db_commit_seconds_sum 0.25\nbroken line\n";
        let m = Metrics::parse(text);
        assert_eq!(m.robots_connected(), 19000);
        assert_eq!(m.jobs("Pending"), 12);
        assert_eq!(m.jobs("Succeeded"), 3);
        assert_eq!(m.jobs("Failed"), 0);
        assert_eq!(
            m.get("rpa_delivery_lateness_seconds_bucket{le=\"0.001\"}"),
            Some(5.0)
        );
        assert_eq!(m.get("rpa_db_commit_seconds_sum"), Some(0.25));
        assert_eq!(m.get("broken"), None);
    }

    #[test]
    fn quantiles_from_buckets() {
        let name = "rpa_delivery_lateness_seconds";
        let before = Metrics::parse(&format!(
            "{name}_bucket{{le=\"0.001\"}} 10\n{name}_bucket{{le=\"0.01\"}} 10\n{name}_bucket{{le=\"+Inf\"}} 10\n"
        ));
        let after = Metrics::parse(&format!(
            "{name}_bucket{{le=\"0.001\"}} 60\n{name}_bucket{{le=\"0.01\"}} 108\n{name}_bucket{{le=\"+Inf\"}} 110\n"
        ));
        assert_eq!(histogram_quantile(&before, &after, name, 0.5), Some(0.001));
        assert_eq!(histogram_quantile(&before, &after, name, 0.9), Some(0.01));
        assert_eq!(
            histogram_quantile(&before, &after, name, 0.99),
            Some(f64::INFINITY)
        );
        assert_eq!(histogram_quantile(&after, &after, name, 0.5), None);
    }
}
