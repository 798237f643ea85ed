//! The `chat` format: `{"text": "<one line>"}`, which the incoming webhooks of Slack,
//! Mattermost and Google Chat post as a message as it is.

use rpa_store::{EventRecord, SubjectState};

/// The longest line sent: chat tools cut or refuse longer messages.
const MAX_CHARS: usize = 1_000;

/// One line saying what happened, e.g. `job.failed: job 42 (report-pkg) on robot-7
/// (001AFFDB45C2): the robot reported failure: file not found`.
pub(super) fn summary(event: &EventRecord) -> String {
    let what = match &event.state {
        SubjectState::Job(job) => format!(
            "job {} ({}) on {} ({}), now {}",
            job.id,
            job.package_name,
            job.robot_name,
            match (&job.robot_address, &job.pool) {
                (Some(address), _) => address.clone(),
                (None, Some(pool)) => format!("pool {pool}"),
                (None, None) => String::new(),
            },
            job.status.as_str()
        ),
        SubjectState::Robot(robot) | SubjectState::RobotWithPools { robot, .. } => {
            format!("robot {} ({})", robot.name, robot.address)
        }
        SubjectState::Credential { robot, credential } => format!(
            "credential {} ({}) of robot {} ({})",
            credential.id, credential.description, robot.name, robot.address
        ),
        SubjectState::Schedule(schedule) => format!(
            "schedule {} ({} on {})",
            schedule.id, schedule.package_name, schedule.robot_name
        ),
        SubjectState::Other(_) => event.subject.clone(),
    };
    let mut line = format!("{}: {what}", event.kind);
    if let Some(reason) = event.reason.as_deref().filter(|r| !r.is_empty()) {
        line.push_str(": ");
        line.push_str(reason);
    }
    one_line(&line)
}

/// Control characters (a robot's text may hold any) become spaces; the length is bounded.
fn one_line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS)
        .collect();
    if text.chars().count() > MAX_CHARS {
        out.pop();
        out.push('…');
    }
    out
}

/// The body of a chat delivery.
pub(super) fn body(event: &EventRecord) -> Vec<u8> {
    serde_json::json!({ "text": summary(event) })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    #[test]
    fn a_summary_is_one_bounded_line() {
        let event = EventRecord {
            id: 7,
            kind: "robot.unreachable".to_owned(),
            subject: "robots/001AFFDB45C2".to_owned(),
            at: Utc::now(),
            reason: Some(format!("offline\nfor {}", "x".repeat(2000))),
            state: SubjectState::Other(None),
        };
        let line = summary(&event);
        assert!(line.starts_with("robot.unreachable: robots/001AFFDB45C2: offline for x"));
        assert!(!line.contains('\n'));
        assert_eq!(line.chars().count(), MAX_CHARS);
        let body: serde_json::Value = serde_json::from_slice(&super::body(&event)).unwrap();
        assert_eq!(body["text"], line);
    }
}
