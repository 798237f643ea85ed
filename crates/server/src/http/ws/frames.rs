//! What the server does with each frame a robot sends (protocol.md, "Robot -> server").

use chrono::Utc;
use rpa_protocol::RobotAddress;
use rpa_protocol::{
    FrameError, JobReport, Metadata, ProtocolLevel, RobotMessage, ServerMessage, parse_robot_frame,
};
use rpa_registry::{CloseRequest, Robot};
use rpa_store::{AckOutcome, Admission, DeclineOutcome, ReportOutcome, RobotRegistration};
use tokio_tungstenite::tungstenite::Message;

use super::connection::{CLOSE_POLICY, Connection, End, Identity};
use crate::http::metrics::bump;
use crate::logging::{Untrusted, warnings};

/// How much of a bad frame is quoted in the log.
const BAD_FRAME_EXCERPT: usize = 200;

impl Connection {
    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let frame = match parse_robot_frame(text) {
            Ok(frame) => frame,
            Err(error) => return self.bad_frame(error, text).await,
        };
        if self.dialect.is_none() {
            self.dialect = Some(frame.dialect);
        }
        match frame.message {
            RobotMessage::MetaData(value) => self.on_metadata(&value).await,
            RobotMessage::Message(value) => {
                self.on_robot_message(value);
                Ok(())
            }
            RobotMessage::DeclinePackage(name) => {
                self.on_decline(name).await;
                Ok(())
            }
            RobotMessage::Ack { job_id } => {
                self.on_ack(job_id);
                Ok(())
            }
        }
    }

    /// Logs a bad frame and, for an extended robot, says what was wrong. Field robots get no
    /// answer: the C# robot would take any message for a package.
    pub(super) async fn bad_frame(&mut self, error: FrameError, text: &str) -> Result<(), End> {
        bump(&self.app.metrics.bad_frames);
        let excerpt: String = text.chars().take(BAD_FRAME_EXCERPT).collect();
        if let Some(left_out) = warnings::BAD_FRAMES.admit() {
            log::warn!(
                "{}: bad frame ({}): {error}: {}{left_out}",
                self.tag(),
                error.code(),
                Untrusted(&excerpt)
            );
        }
        if self.robot.as_ref().is_some_and(|r| r.extended) {
            let reply = ServerMessage::Error {
                code: error.code().to_owned(),
                message: error.to_string(),
            };
            self.send(Message::text(reply.encode(self.dialect())))
                .await?;
        }
        if self.too_many_bad_frames() {
            let limits = &self.app.config.limits;
            if let Some(left_out) = warnings::BAD_FRAMES.admit() {
                log::warn!(
                    "{}: more than {} bad frames within {} s: closing{left_out}",
                    self.tag(),
                    limits.bad_frames,
                    limits.bad_frame_window.as_secs()
                );
            }
            self.session.close(CLOSE_POLICY, "too many bad frames");
        }
        Ok(())
    }

    async fn on_metadata(&mut self, value: &serde_json::Value) -> Result<(), End> {
        let metadata = match Metadata::from_value(value) {
            Ok(metadata) => metadata,
            Err(error) => {
                bump(&self.app.metrics.metadata_declined);
                if let Some(left_out) = warnings::BAD_FRAMES.admit() {
                    log::warn!("{}: metadata declined: {error}{left_out}", self.tag());
                }
                return self.decline_metadata().await;
            }
        };
        let extended = metadata.protocol == ProtocolLevel::Extended;
        let address = metadata.robot_address.clone();
        let registration = RobotRegistration {
            address: address.as_str().to_owned(),
            name: metadata.robot_name.clone(),
            user_id: metadata.user_id.as_ref().map(serde_json::Value::to_string),
            protocol: if extended { 2 } else { 1 },
            metadata: serde_json::Value::Object(metadata.fields).to_string(),
            connection_id: self.session.id().to_string(),
            at: Utc::now(),
        };
        let policy = *self.app.dispatcher.policy();
        let credential = self.credential.as_ref().map(|credential| credential.id);
        let sent = value.to_string();
        let keep = self.app.config.limits.max_messages_per_robot;
        // Whether the connection may speak for the address is decided in the registration's
        // own transaction, from the credentials as they are then. The robot is reported online
        // only once that is on disk.
        let admitted = self
            .app
            .db
            .write(move |tx| {
                match tx.admit_robot(&registration.address, credential, registration.at)? {
                    Admission::Admitted => tx.register_robot(&registration, &policy).map(Ok),
                    Admission::OtherAddress { bound } => {
                        // The attempt stays on the record of the robot whose credential it was.
                        tx.insert_robot_message(
                            &bound,
                            &registration.connection_id,
                            registration.at,
                            &sent,
                        )?;
                        tx.trim_robot_messages(&bound, keep)?;
                        Ok(Err(Admission::OtherAddress { bound }))
                    }
                    refused => Ok(Err(refused)),
                }
            })
            .await;
        let first_time = match admitted {
            Ok(Ok(first_time)) => first_time,
            Ok(Err(refused)) => return Err(self.refuse_address(&address, refused).await),
            Err(error) => {
                log::error!(
                    "{}: cannot record the robot's registration: {error}",
                    self.tag()
                );
                // The robot sends its metadata again when declined.
                return self.decline_metadata().await;
            }
        };
        let registered = self.app.registry.register(
            &self.session,
            Robot {
                address: address.clone(),
                dialect: self.dialect(),
                extended,
            },
        );
        self.registered(Identity {
            address: address.clone(),
            extended,
        });
        bump(&self.app.metrics.registrations);
        log::info!(
            "{}: registered {} as {}, {} dialect, {} protocol",
            self.tag(),
            if first_time {
                "for the first time"
            } else {
                "again"
            },
            Untrusted(&metadata.robot_name),
            self.dialect().key(),
            if extended { "extended" } else { "field" },
        );
        if let Some(replaced) = registered.replaced {
            log::info!(
                "{}: replaces connection {} of the same robot",
                self.tag(),
                replaced.id()
            );
        }
        if let Some(abandoned) = registered.abandoned {
            // This connection spoke for another robot before: that robot is offline now.
            let connection_id = self.session.id().to_string();
            let now = Utc::now();
            self.app
                .db
                .write_detached("an abandoned robot going offline", move |tx| {
                    tx.robot_disconnected(
                        abandoned.as_str(),
                        &connection_id,
                        now,
                        "its connection now speaks for another robot",
                    )
                });
        }
        self.start_pings();
        if extended {
            let welcome = ServerMessage::Registered {
                connection_id: self.session.id().to_string(),
                protocol: rpa_protocol::EXTENDED_PROTOCOL_VERSION,
                ping_interval_ms: millis(self.app.config.ping_interval),
                ack_timeout_ms: millis(self.app.config.ack_timeout),
            };
            self.send(Message::text(welcome.encode(self.dialect())))
                .await?;
        }
        self.app
            .dispatcher
            .robot_ready(
                &self.session,
                &address,
                "sent to the robot when it connected",
            )
            .await;
        Ok(())
    }

    /// The connection may not speak for `address` (docs/SECURITY.md): its metadata is
    /// declined and the connection closed with 1008. A robot registered elsewhere as that
    /// address keeps its connection.
    async fn refuse_address(&mut self, address: &RobotAddress, refused: Admission) -> End {
        bump(&self.app.metrics.metadata_declined);
        let why = match &refused {
            Admission::Protected => {
                "the address is protected by a credential and the connection presented none of its"
                    .to_owned()
            }
            Admission::Revoked => "the connection's credential was revoked".to_owned(),
            Admission::OtherAddress { bound } => {
                format!(
                    "the connection's credential is bound to {}",
                    Untrusted(bound)
                )
            }
            Admission::Admitted => "admitted".to_owned(),
        };
        if let Some(left_out) = warnings::REFUSED_HANDSHAKES.admit() {
            log::warn!(
                "{}: metadata naming {} declined: {why}{left_out}",
                self.tag(),
                Untrusted(address.as_str())
            );
        }
        if let Err(end) = self.decline_metadata().await {
            return end;
        }
        self.close(CloseRequest {
            code: CLOSE_POLICY,
            reason: "not allowed to register as this address".to_owned(),
        })
        .await
    }

    async fn decline_metadata(&mut self) -> Result<(), End> {
        let reply = ServerMessage::DeclineMetaData.encode(self.dialect());
        self.send(Message::text(reply)).await
    }

    /// Stores and logs the message; a `{job_id, status}` report updates the job.
    fn on_robot_message(&mut self, value: serde_json::Value) {
        let json = value.to_string();
        let Some(robot) = self.robot.clone() else {
            if let Some(left_out) = warnings::BAD_FRAMES.admit() {
                log::warn!(
                    "{}: message from a connection that has not registered, ignored: {}{left_out}",
                    self.tag(),
                    Untrusted(&json)
                );
            }
            return;
        };
        bump(&self.app.metrics.robot_messages);
        log::info!("{}: message: {}", self.tag(), Untrusted(&json));
        let report = JobReport::from_value(&value);
        let address = robot.address.as_str().to_owned();
        let connection_id = self.session.id().to_string();
        let now = Utc::now();
        let session = std::sync::Arc::clone(&self.session);
        let dialect = self.dialect();
        let metrics = std::sync::Arc::clone(&self.app.metrics);
        let keep = self.app.config.limits.max_messages_per_robot;
        let dispatcher = self.app.dispatcher.clone();
        self.app.db.submit(
            self.tag().to_string(),
            "cannot store the robot's message",
            move |tx| {
                tx.insert_robot_message(&address, &connection_id, now, &json)?;
                tx.trim_robot_messages(&address, keep)?;
                match &report {
                    Some(report) => {
                        let outcome = tx.report(
                            &address,
                            report.job_id,
                            report.status == rpa_protocol::ReportStatus::Success,
                            report.message.as_deref(),
                            now,
                        )?;
                        // A report frees the robot: its pools' waiting jobs are due now.
                        let woken = match outcome {
                            ReportOutcome::Updated { .. } => {
                                tx.wake_pools_of(&address, now, rpa_store::WAKE_LIMIT)?
                            }
                            _ => Vec::new(),
                        };
                        Ok(Some((report.job_id, outcome, woken)))
                    }
                    None => Ok(None),
                }
            },
            move |reported, tag| {
                let Some((job_id, outcome, woken)) = reported else {
                    return;
                };
                dispatcher.wake_all(&woken, now);
                bump(&metrics.reports);
                match outcome {
                    ReportOutcome::Updated { from, to } => log::info!(
                        "{tag}: job {job_id} reported: {} -> {}",
                        from.as_str(),
                        to.as_str()
                    ),
                    other => {
                        log::warn!("{tag}: report on job {job_id} ignored: {other:?}");
                        if robot.extended {
                            let message = format!("job {job_id} cannot take this report");
                            let reply = ServerMessage::Error {
                                code: "report_refused".to_owned(),
                                message,
                            };
                            let _ = session.push(rpa_registry::Outbound {
                                text: reply.encode(dialect),
                                job: None,
                            });
                        }
                    }
                }
            },
        );
    }

    /// The robot could not take a package: send it again after a back-off.
    async fn on_decline(&mut self, package_name: String) {
        let Some(robot) = self.robot.clone() else {
            if let Some(left_out) = warnings::BAD_FRAMES.admit() {
                log::warn!(
                    "{}: package declined by a connection that has not registered, ignored{left_out}",
                    self.tag()
                );
            }
            return;
        };
        bump(&self.app.metrics.declines);
        let address = robot.address.as_str().to_owned();
        let policy = *self.app.dispatcher.policy();
        let now = Utc::now();
        let name = package_name.clone();
        let outcome = self
            .app
            .db
            .write(move |tx| tx.decline(&address, &name, now, &policy))
            .await;
        let shown = Untrusted(&package_name);
        match outcome {
            Ok(DeclineOutcome::Resend {
                job_id,
                attempt,
                delay,
            }) => {
                log::info!(
                    "{}: package {shown} declined: job {job_id} goes again in {} ms (attempt {attempt})",
                    self.tag(),
                    delay.num_milliseconds()
                );
                self.app.dispatcher.wake(job_id, now + delay);
                self.app.dispatcher.wake_pools_of(robot.address.as_str());
            }
            Ok(DeclineOutcome::GaveUp { job_id }) => {
                log::warn!(
                    "{}: package {shown} declined: job {job_id} failed, no sendings left",
                    self.tag()
                );
                self.app.dispatcher.wake_pools_of(robot.address.as_str());
            }
            Ok(DeclineOutcome::NoJob) => log::warn!(
                "{}: package {shown} declined, but no package was sent to this robot",
                self.tag()
            ),
            Err(error) => log::error!("{}: cannot record the decline: {error}", self.tag()),
        }
    }

    /// An extended robot received a package.
    fn on_ack(&mut self, job_id: i64) {
        let Some(robot) = self.robot.clone() else {
            if let Some(left_out) = warnings::BAD_FRAMES.admit() {
                log::warn!(
                    "{}: acknowledgement before registration, ignored{left_out}",
                    self.tag()
                );
            }
            return;
        };
        bump(&self.app.metrics.acks);
        self.awaiting_ack.remove(&job_id);
        let address = robot.address.as_str().to_owned();
        let now = Utc::now();
        let session = std::sync::Arc::clone(&self.session);
        let dialect = self.dialect();
        let policy = *self.app.dispatcher.policy();
        let dispatcher = self.app.dispatcher.clone();
        self.app.db.submit(
            self.tag().to_string(),
            "cannot record the acknowledgement",
            move |tx| tx.acknowledge(&address, job_id, now, &policy),
            move |outcome, tag| match outcome {
                AckOutcome::Acknowledged | AckOutcome::AlreadyConfirmed => {
                    log::debug!("{tag}: job {job_id} acknowledged");
                    // Failed if no report comes within `--job-report-timeout`.
                    if let Some(timeout) = policy.report_timeout {
                        dispatcher.wake(job_id, now + timeout);
                    }
                }
                other => {
                    log::warn!("{tag}: acknowledgement of job {job_id} ignored: {other:?}");
                    let reply = ServerMessage::Error {
                        code: "unknown_job".to_owned(),
                        message: format!(
                            "job {job_id} is not awaiting an acknowledgement from this robot"
                        ),
                    };
                    let _ = session.push(rpa_registry::Outbound {
                        text: reply.encode(dialect),
                        job: None,
                    });
                }
            },
        );
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
