//! Each fault's outcome: its pass rule split into checks, each checked by code, and the figures
//! behind them. Printed for people, written as JSON for machines.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// One part of a pass rule.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub rule: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    pub fault: String,
    pub title: String,
    pub passed: bool,
    pub duration_s: f64,
    pub checks: Vec<Check>,
    pub figures: Map<String, Value>,
    /// How the fault was injected and anything a reader needs to interpret the figures.
    pub notes: Vec<String>,
    /// Set when the harness itself failed (the fault could not be run to the end).
    pub error: Option<String>,
}

impl FaultReport {
    pub fn new(fault: &str, title: &str) -> FaultReport {
        FaultReport {
            fault: fault.to_owned(),
            title: title.to_owned(),
            passed: false,
            duration_s: 0.0,
            checks: Vec::new(),
            figures: Map::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    pub fn check(&mut self, rule: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            rule: rule.to_owned(),
            passed,
            detail: detail.into(),
        });
    }

    pub fn figure(&mut self, name: &str, value: impl Serialize) {
        self.figures.insert(
            name.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Passed: no error, at least one check, every check passed.
    pub fn finish(&mut self, took: Duration) {
        self.duration_s = (took.as_secs_f64() * 10.0).round() / 10.0;
        self.passed =
            self.error.is_none() && !self.checks.is_empty() && self.checks.iter().all(|c| c.passed);
    }

    /// The human summary.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} {}: {} ({:.1} s)\n",
            self.fault.to_uppercase(),
            self.title,
            if self.passed { "PASS" } else { "FAIL" },
            self.duration_s
        );
        for check in &self.checks {
            out.push_str(&format!(
                "  [{}] {}: {}\n",
                if check.passed { "ok" } else { "FAIL" },
                check.rule,
                check.detail
            ));
        }
        if let Some(error) = &self.error {
            out.push_str(&format!(
                "  [ERROR] the harness could not finish: {error}\n"
            ));
        }
        if !self.figures.is_empty() {
            out.push_str("  figures:\n");
            for (name, value) in &self.figures {
                let text = value.to_string();
                let text = if text.len() > 300 {
                    format!("{}...", text.chars().take(300).collect::<String>())
                } else {
                    text
                };
                out.push_str(&format!("    {name}: {text}\n"));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub passed: bool,
    pub duration_s: f64,
    pub server_bin: String,
    pub faults: Vec<FaultReport>,
}

impl RunReport {
    pub fn render_summary(&self) -> String {
        let mut out = String::from("\nSummary\n");
        for fault in &self.faults {
            out.push_str(&format!(
                "  {:<4} {:<4} {:>6.1} s  {}\n",
                fault.fault.to_uppercase(),
                if fault.passed { "PASS" } else { "FAIL" },
                fault.duration_s,
                fault.title
            ));
        }
        out.push_str(&format!(
            "  {} of {} passed in {:.1} s\n",
            self.faults.iter().filter(|f| f.passed).count(),
            self.faults.len(),
            self.duration_s
        ));
        out
    }
}

/// Percentile of sorted values (nearest rank); 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e4).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_passes_only_when_every_check_does() {
        let mut report = FaultReport::new("f0", "test");
        report.finish(Duration::from_secs(1));
        assert!(!report.passed, "no checks is not a pass");
        report.check("a", true, "");
        report.finish(Duration::from_secs(1));
        assert!(report.passed);
        report.check("b", false, "why");
        report.finish(Duration::from_secs(1));
        assert!(!report.passed);
        assert!(report.render().contains("[FAIL] b: why"));
    }

    #[test]
    fn percentiles() {
        let values = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&values, 50.0), 2.0);
        assert_eq!(percentile(&values, 100.0), 4.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
