//! Job reports: a `client robot message` whose value is
//! `{"job_id": N, "status": "success" | "failure", "message"?: ...}`.

use serde_json::{Map, Value};

use crate::envelope::job_id_from_value;

/// A robot's report on a job it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub job_id: i64,
    pub status: ReportStatus,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStatus {
    Success,
    Failure,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Success => "success",
            ReportStatus::Failure => "failure",
        }
    }

    fn parse(text: &str) -> Option<ReportStatus> {
        let text = text.trim();
        [ReportStatus::Success, ReportStatus::Failure]
            .into_iter()
            .find(|status| text.eq_ignore_ascii_case(status.as_str()))
    }
}

impl std::fmt::Display for ReportStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JobReport {
    /// Reads a report out of a robot message value; `None` when the value is not one, in which
    /// case it is an ordinary message and is only stored.
    ///
    /// A `message` that is not a string is rendered as compact JSON rather than dropped, so a
    /// robot's structured error detail still reaches the job.
    pub fn from_value(value: &Value) -> Option<JobReport> {
        let object = value.as_object()?;
        let job_id = job_id_from_value(object.get("job_id")?)?;
        let status = ReportStatus::parse(object.get("status")?.as_str()?)?;
        let message = match object.get("message") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
        };
        Some(JobReport {
            job_id,
            status,
            message,
        })
    }

    /// The value a robot client sends as a `client robot message`.
    pub fn to_value(&self) -> Value {
        let mut object = Map::with_capacity(3);
        object.insert("job_id".to_owned(), Value::from(self.job_id));
        object.insert("status".to_owned(), Value::from(self.status.as_str()));
        if let Some(message) = &self.message {
            object.insert("message".to_owned(), Value::from(message.as_str()));
        }
        Value::Object(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(value: Value) -> Option<JobReport> {
        JobReport::from_value(&value)
    }

    #[test]
    fn success_and_failure() {
        assert_eq!(
            report(json!({"job_id": 7, "status": "success"})),
            Some(JobReport {
                job_id: 7,
                status: ReportStatus::Success,
                message: None
            })
        );
        assert_eq!(
            report(json!({"job_id": "8", "status": " FAILURE ", "message": "no disk"})),
            Some(JobReport {
                job_id: 8,
                status: ReportStatus::Failure,
                message: Some("no disk".into())
            })
        );
    }

    #[test]
    fn non_string_messages_are_rendered_compactly() {
        let parsed =
            report(json!({"job_id": 1, "status": "failure", "message": {"code": 5, "at": [1, 2]}}))
                .unwrap();
        assert_eq!(parsed.message.as_deref(), Some(r#"{"code":5,"at":[1,2]}"#));
        let parsed = report(json!({"job_id": 1, "status": "success", "message": 3})).unwrap();
        assert_eq!(parsed.message.as_deref(), Some("3"));
        let parsed = report(json!({"job_id": 1, "status": "success", "message": null})).unwrap();
        assert_eq!(parsed.message, None);
    }

    #[test]
    fn not_reports() {
        for value in [
            json!("done"),
            json!(null),
            json!([{"job_id": 1, "status": "success"}]),
            json!({"status": "success"}),
            json!({"job_id": 1}),
            json!({"job_id": 1, "status": "done"}),
            json!({"job_id": 1, "status": 1}),
            json!({"job_id": 1.5, "status": "success"}),
            json!({"job_id": "x1", "status": "success"}),
            json!({"job_id": null, "status": "success"}),
        ] {
            assert_eq!(report(value.clone()), None, "{value}");
        }
    }

    #[test]
    fn to_value_round_trips() {
        let original = JobReport {
            job_id: 42,
            status: ReportStatus::Failure,
            message: Some("boom".into()),
        };
        assert_eq!(
            original.to_value().to_string(),
            r#"{"job_id":42,"status":"failure","message":"boom"}"#
        );
        assert_eq!(JobReport::from_value(&original.to_value()), Some(original));
        assert_eq!(ReportStatus::Success.to_string(), "success");
    }
}
