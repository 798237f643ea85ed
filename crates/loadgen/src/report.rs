//! What a scenario found: a human table for the terminal and a JSON document for files.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::machine::Machine;
use crate::stats::Summary;

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: String,
    /// A number, or a string for figures that are not one.
    pub value: Value,
    pub unit: String,
}

/// The outcome of one scenario run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// What quality.md asks of this scenario, for the reader (never checked here).
    pub target: String,
    /// The command line that produced the figures.
    pub command: Vec<String>,
    pub started_at: String,
    /// /proc/loadavg when the run started.
    pub load_average_at_start: String,
    pub elapsed_s: f64,
    pub parameters: Map<String, Value>,
    pub machine: Machine,
    pub figures: Vec<Figure>,
    /// Correctness failures (lost jobs, early deliveries, unexpected drops, ...): a run with any
    /// exits non-zero.
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, target: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            command: std::env::args().collect(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            load_average_at_start: crate::machine::load_average(),
            elapsed_s: 0.0,
            parameters: Map::new(),
            machine: Machine::default(),
            figures: Vec::new(),
            failures: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn param(&mut self, key: &str, value: impl Into<Value>) {
        self.parameters.insert(key.to_owned(), value.into());
    }

    pub fn figure(&mut self, name: &str, value: impl Into<Value>, unit: &str) {
        self.figures.push(Figure {
            name: name.to_owned(),
            value: value.into(),
            unit: unit.to_owned(),
        });
    }

    /// A duration given in microseconds, shown in milliseconds.
    pub fn millis(&mut self, name: &str, micros: i64) {
        self.figure(name, micros_to_ms(micros), "ms");
    }

    /// p50, p99 and max (and the count) of samples in microseconds, shown in milliseconds.
    pub fn latency(&mut self, name: &str, summary: Option<&Summary>) {
        match summary {
            Some(summary) => {
                self.figure(&format!("{name} samples"), summary.count, "count");
                self.millis(&format!("{name} p50"), summary.p50);
                self.millis(&format!("{name} p99"), summary.p99);
                self.millis(&format!("{name} max"), summary.max);
            }
            None => self.figure(&format!("{name} samples"), 0, "count"),
        }
    }

    pub fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }

    pub fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }

    /// The value of a figure by name (for tests and the smoke summary).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.figures
            .iter()
            .find(|figure| figure.name == name)
            .map(|figure| &figure.value)
    }

    /// The table printed on stdout.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("== {} ==\n", self.scenario));
        if !self.target.is_empty() {
            out.push_str(&format!("quality target: {}\n", self.target));
        }
        if !self.parameters.is_empty() {
            let params: Vec<String> = self
                .parameters
                .iter()
                .map(|(key, value)| format!("{key}={}", format_value(value)))
                .collect();
            out.push_str(&format!("parameters: {}\n", params.join(" ")));
        }
        let name_width = self
            .figures
            .iter()
            .map(|f| f.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("figure".len());
        let values: Vec<String> = self
            .figures
            .iter()
            .map(|f| format_value(&f.value))
            .collect();
        let value_width = values
            .iter()
            .map(|v| v.chars().count())
            .max()
            .unwrap_or(0)
            .max("value".len());
        out.push_str(&format!(
            "  {:<name_width$}  {:>value_width$}  unit\n",
            "figure", "value"
        ));
        for (figure, value) in self.figures.iter().zip(&values) {
            out.push_str(&format!(
                "  {:<name_width$}  {:>value_width$}  {}\n",
                figure.name, value, figure.unit
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        if self.failures.is_empty() {
            out.push_str("correctness failures: none\n");
        } else {
            for failure in &self.failures {
                out.push_str(&format!("CORRECTNESS FAILURE: {failure}\n"));
            }
        }
        out.push_str(&format!(
            "elapsed: {:.1} s; load average at start {}, at end {}\n",
            self.elapsed_s, self.load_average_at_start, self.machine.load_average
        ));
        out
    }
}

pub fn micros_to_ms(micros: i64) -> f64 {
    micros as f64 / 1000.0
}

/// Integers with thousands separators; other numbers with a precision that fits their size.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::Number(number) => {
            if let Some(i) = number.as_i64() {
                group_thousands(i)
            } else if let Some(u) = number.as_u64() {
                group_thousands_u(u)
            } else {
                format_float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

pub fn format_float(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let abs = value.abs();
    let text = if abs >= 1000.0 {
        format!("{value:.0}")
    } else if abs >= 100.0 {
        format!("{value:.1}")
    } else if abs >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    };
    // Group the integer part.
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let mut out = String::from(sign);
    out.push_str(&group_digits(int));
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    out
}

fn group_thousands(value: i64) -> String {
    if value < 0 {
        format!("-{}", group_thousands_u(value.unsigned_abs()))
    } else {
        group_thousands_u(value.unsigned_abs())
    }
}

fn group_thousands_u(value: u64) -> String {
    group_digits(&value.to_string())
}

fn group_digits(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_get_separators() {
        assert_eq!(format_value(&json!(0)), "0");
        assert_eq!(format_value(&json!(999)), "999");
        assert_eq!(format_value(&json!(19000)), "19,000");
        assert_eq!(format_value(&json!(1000000)), "1,000,000");
        assert_eq!(format_value(&json!(-1234)), "-1,234");
        assert_eq!(format_value(&json!(u64::MAX)), "18,446,744,073,709,551,615");
    }

    #[test]
    fn floats_keep_a_precision_that_fits() {
        assert_eq!(format_value(&json!(21345.67)), "21,346");
        assert_eq!(format_value(&json!(123.456)), "123.5");
        assert_eq!(format_value(&json!(12.3456)), "12.35");
        assert_eq!(format_value(&json!(0.1234)), "0.123");
        assert_eq!(format_value(&json!(-0.5)), "-0.500");
        assert_eq!(format_value(&json!(-2500.4)), "-2,500");
        assert_eq!(format_float(f64::NAN), "NaN");
    }

    #[test]
    fn other_values() {
        assert_eq!(format_value(&json!("abc")), "abc");
        assert_eq!(format_value(&Value::Null), "-");
        assert_eq!(format_value(&json!(true)), "true");
    }

    #[test]
    fn table_and_json() {
        let mut report = Report::new("p3-triggers", "≥ 20,000/s");
        report.param("clients", 64);
        report.figure("accepted triggers/s", 20123.4, "1/s");
        report.latency("latency", Summary::of(vec![1_000, 2_000, 30_000]).as_ref());
        let table = report.render();
        assert!(table.contains("== p3-triggers =="));
        assert!(table.contains("parameters: clients=64"));
        assert!(
            table.contains("accepted triggers/s  20,123  1/s"),
            "{table}"
        );
        assert!(table.contains("latency p99"));
        assert!(table.contains("30.00  ms"), "{table}");
        assert!(table.contains("correctness failures: none"));
        report.fail("3 jobs lost");
        assert!(report.render().contains("CORRECTNESS FAILURE: 3 jobs lost"));

        let doc = serde_json::to_value(&report).unwrap();
        assert_eq!(doc["scenario"], "p3-triggers");
        assert_eq!(doc["parameters"]["clients"], 64);
        assert_eq!(doc["figures"][0]["name"], "accepted triggers/s");
        assert_eq!(doc["figures"][0]["unit"], "1/s");
        assert_eq!(doc["failures"][0], "3 jobs lost");
        assert_eq!(report.get("latency p50"), Some(&json!(2.0)));
    }
}
