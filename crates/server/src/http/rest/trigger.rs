//! Accepting a job trigger: validation, the job row (its package file follows, written by
//! `package_files`), and waking the
//! scheduler. Shared by `POST /api/jobs` and the routes old clients call.

use std::sync::Arc;

use chrono::Utc;
use rpa_packages::validate_trigger_body;
use rpa_protocol::RobotAddress;
use rpa_scheduler::CronSchedule;
use rpa_scheduler::{ScheduleContext, ScheduleRequest, parse_schedule};
use rpa_store::{Created, IdempotencyKey, InsertJob, InsertSchedule, NewJob, NewSchedule, Prior};
use rpa_validation::FieldErrors;

use crate::app::App;
use crate::http::metrics::bump;
use crate::http::problem::Problem;
use crate::logging::Untrusted;

/// What an accepted trigger created: a job or a recurring schedule. For a retry under the
/// same `Idempotency-Key`, what the first request created, and the body it was answered with.
pub(super) struct Accepted {
    pub(super) created: Created,
    pub(super) first_response: Option<String>,
}

impl From<Prior> for Accepted {
    fn from(prior: Prior) -> Accepted {
        Accepted {
            created: prior.created,
            first_response: prior.response,
        }
    }
}

impl Accepted {
    fn new(created: Created) -> Accepted {
        Accepted {
            created,
            first_response: None,
        }
    }
}

/// The answer's body, recorded with the idempotency key so that a retry gets the same one.
pub(super) fn remember(
    tx: &mut rpa_store::WriteTx<'_>,
    key: Option<&str>,
    body: impl FnOnce() -> Result<String, serde_json::Error>,
) -> Result<(), rpa_store::StoreError> {
    let Some(key) = key else { return Ok(()) };
    let body = body().map_err(|error| rpa_store::StoreError::Failed(error.to_string()))?;
    tx.remember_response(key, &body)
}

/// Longest `Idempotency-Key`.
const MAX_KEY_CHARS: usize = 255;

/// The `Idempotency-Key` header as sent, bytes and all: read here rather than as text by warp,
/// whose rejection of a non-ASCII value loses to another route's 405 (stack-notes.md), so that
/// every malformed key is this route's `400 bad_idempotency_key`.
pub(super) fn idempotency_header()
-> impl warp::Filter<Extract = (Option<warp::http::HeaderValue>,), Error = std::convert::Infallible>
+ Clone {
    use warp::Filter as _;
    warp::header::headers_cloned()
        .map(|headers: warp::http::HeaderMap| headers.get("idempotency-key").cloned())
}

pub(super) fn idempotency_key(
    raw: Option<&warp::http::HeaderValue>,
) -> Result<Option<String>, Problem> {
    let Some(raw) = raw else { return Ok(None) };
    let key = std::str::from_utf8(raw.as_bytes()).unwrap_or("").trim();
    if key.is_empty()
        || key.len() > MAX_KEY_CHARS
        || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(Problem::bad_request(
            "bad_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters"),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// FNV-1a, 64 bits: a digest that stays the same across builds and versions (std's hasher
/// does not promise that), to tell a retried request from a different one under the same key.
pub(super) fn digest(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}-{}", body.len())
}

pub(super) async fn accept(
    app: &Arc<App>,
    doc: &serde_json::Value,
    body: &[u8],
    key: Option<String>,
) -> Result<Accepted, Problem> {
    let result = accept_inner(app, doc, body, key).await;
    match &result {
        Ok(_) => bump(&app.metrics.triggers_accepted),
        Err(problem) => {
            bump(&app.metrics.triggers_rejected);
            if let Some(left_out) = crate::logging::warnings::REFUSED_TRIGGERS.admit() {
                log::info!("trigger refused: {problem}{left_out}");
            }
        }
    }
    result
}

async fn accept_inner(
    app: &Arc<App>,
    doc: &serde_json::Value,
    body: &[u8],
    key: Option<String>,
) -> Result<Accepted, Problem> {
    let now = Utc::now();
    let mut errors = FieldErrors::new();
    let trigger = match validate_trigger_body(doc, body) {
        Ok(trigger) => Some(trigger),
        Err(found) => {
            errors.extend(found);
            None
        }
    };
    // The schedule is checked even when the rest failed, so one answer lists every problem.
    let mut context = ScheduleContext::new(now, app.config.timezone);
    context.min_interval = chrono::TimeDelta::from_std(app.config.min_schedule_interval)
        .unwrap_or(chrono::TimeDelta::seconds(1));
    let schedule = doc
        .get("Schedule")
        .and_then(serde_json::Value::as_object)
        .map(|object| parse_schedule(object, &context));
    let when = match schedule {
        Some(Ok(request)) => Some(request),
        Some(Err(found)) => {
            errors.extend(found);
            None
        }
        None => None,
    };
    let (Some(trigger), Some(when), true) = (trigger, when, errors.is_empty()) else {
        return Err(Problem::validation(errors));
    };
    let key = key.map(|key| IdempotencyKey {
        key,
        request_hash: digest(body),
    });
    match when {
        ScheduleRequest::Once(once) => accept_job(app, trigger, once.run_at, key, now).await,
        ScheduleRequest::Recurring(cron) => accept_schedule(app, trigger, cron, key, now).await,
    }
}

async fn accept_schedule(
    app: &Arc<App>,
    trigger: rpa_packages::Trigger,
    cron: CronSchedule,
    key: Option<IdempotencyKey>,
    now: chrono::DateTime<Utc>,
) -> Result<Accepted, Problem> {
    let address = trigger.robot.robot_address().map(RobotAddress::new);
    let next_run_at = cron.upcoming(now, 1).first().copied();
    let schedule = NewSchedule {
        cron: cron.expression().to_owned(),
        timezone: cron.zone().name().to_owned(),
        start: cron.start(),
        end: cron.end(),
        package: trigger.package.to_json(),
        package_name: trigger.package.name().to_owned(),
        robot_address: address.as_ref().map(|a| a.as_str().to_owned()),
        pool: trigger.robot.pool().map(str::to_owned),
        robot_name: trigger.robot.robot_name.clone(),
        next_run_at,
        created_at: now,
        idempotency: key,
    };
    let key = schedule.idempotency.as_ref().map(|k| k.key.clone());
    let inserted = app
        .db
        .write(move |tx| {
            let outcome = tx.insert_schedule(&schedule)?;
            if let InsertSchedule::Created(created) = &outcome {
                let view = super::schedules::view((**created).clone());
                remember(tx, key.as_deref(), || serde_json::to_string(&view))?;
            }
            Ok(outcome)
        })
        .await;
    match inserted {
        Ok(InsertSchedule::Created(schedule)) => {
            log::info!(
                "schedule {} created: {} package {} cron {} in {}, next at {}",
                schedule.id,
                Target(schedule.robot_address.as_deref(), schedule.pool.as_deref()),
                Untrusted(&schedule.package_name),
                Untrusted(&schedule.cron),
                schedule.timezone,
                schedule
                    .next_run_at
                    .map_or("never".to_owned(), crate::http::views::time)
            );
            if let Some(next) = schedule.next_run_at {
                app.dispatcher.wake_schedule(schedule.id, next);
            }
            Ok(Accepted::new(Created::Schedule(schedule)))
        }
        Ok(InsertSchedule::Replayed(prior)) => Ok(prior.into()),
        Ok(InsertSchedule::KeyConflict) => Err(key_reused()),
        Ok(InsertSchedule::UnknownRobot) => Err(unknown_robot(address.as_ref())),
        Err(error) => Err(Problem::from(error)),
    }
}

pub(super) fn key_reused() -> Problem {
    Problem::conflict(
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request",
    )
}

fn unknown_robot(address: Option<&RobotAddress>) -> Problem {
    let address = address.map_or("", RobotAddress::as_str);
    Problem::not_found(format!(
        "no robot with address {address} has ever registered"
    ))
}

/// While package files cannot be written, no job is accepted: what was accepted must not be
/// left without its file for long.
pub(super) fn packages_writable(app: &App) -> Result<(), Problem> {
    match app.package_files.failing() {
        None => Ok(()),
        Some(true) => Err(Problem {
            status: warp::http::StatusCode::INSUFFICIENT_STORAGE,
            ..Problem::unavailable(
                "storage_full",
                "the packages folder's disk is full; nothing was stored",
            )
        }),
        Some(false) => Err(Problem::unavailable(
            "packages_unwritable",
            "package files cannot be written (see the server log); nothing was stored",
        )),
    }
}

/// `robot X` or `pool Y`, as log lines name what a job or schedule is for.
struct Target<'a>(Option<&'a str>, Option<&'a str>);

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target(_, Some(pool)) => write!(f, "pool {pool}"),
            Target(address, None) => write!(f, "robot {}", Untrusted(address.unwrap_or(""))),
        }
    }
}

async fn accept_job(
    app: &Arc<App>,
    trigger: rpa_packages::Trigger,
    run_at: chrono::DateTime<Utc>,
    key: Option<IdempotencyKey>,
    now: chrono::DateTime<Utc>,
) -> Result<Accepted, Problem> {
    let address = trigger.robot.robot_address().map(RobotAddress::new);
    packages_writable(app)?;
    let package = trigger.package;
    let job = NewJob {
        package: package.to_json(),
        package_name: package.name().to_owned(),
        robot_address: address.as_ref().map(|a| a.as_str().to_owned()),
        pool: trigger.robot.pool().map(str::to_owned),
        robot_name: trigger.robot.robot_name.clone(),
        run_at,
        schedule_id: None,
        retry_of: None,
        created_at: now,
        reason: "created by trigger".to_owned(),
        idempotency: key,
    };
    let key = job.idempotency.as_ref().map(|k| k.key.clone());
    let inserted = app
        .db
        .write(move |tx| {
            let outcome = tx.insert_job(&job)?;
            if let InsertJob::Created(created) = &outcome {
                let view = crate::http::views::JobView::from(created.clone());
                remember(tx, key.as_deref(), || serde_json::to_string(&view))?;
            }
            Ok(outcome)
        })
        .await;
    match inserted {
        Ok(InsertJob::Created(job)) => {
            log::info!(
                "job {} created: {} package {} run_at {}",
                job.id,
                Target(job.robot_address.as_deref(), job.pool.as_deref()),
                Untrusted(&job.package_name),
                crate::http::views::time(job.run_at)
            );
            app.dispatcher.wake(job.id, job.run_at);
            app.package_files.notify();
            Ok(Accepted::new(Created::Job(Box::new(job))))
        }
        Ok(InsertJob::Replayed(prior)) => Ok(prior.into()),
        Ok(InsertJob::KeyConflict) => Err(key_reused()),
        Ok(InsertJob::UnknownRobot) => Err(unknown_robot(address.as_ref())),
        Err(error) => Err(Problem::from(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_tell_bodies_apart_and_stay_stable() {
        assert_eq!(digest(b""), "cbf29ce484222325-0");
        assert_ne!(digest(b"{\"a\":1}"), digest(b"{\"a\":2}"));
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        use warp::http::HeaderValue;
        let key = |text: &[u8]| idempotency_key(Some(&HeaderValue::from_bytes(text).unwrap()));
        assert_eq!(idempotency_key(None), Ok(None));
        assert_eq!(key(b" k-1 "), Ok(Some("k-1".to_owned())));
        assert!(key(b"").is_err());
        assert!(key("é".as_bytes()).is_err());
        assert!(key(&[0xff, 0xfe]).is_err());
        assert!(key("k".repeat(256).as_bytes()).is_err());
    }
}
