//! `/api/jobs`: trigger, list, read, cancel, force.

use std::sync::Arc;

use rpa_protocol::RobotAddress;
use rpa_store::{ChangeOutcome, IdempotencyKey, JobFilter, JobStatus, RetryJob};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::body::{JsonBody, json_body};
use super::query::{self, Query};
use super::trigger;
use super::{answer, json, with_app};
use crate::app::App;
use crate::http::problem::Problem;
use crate::http::views::{JobView, Page};
use rpa_store::Created;

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let max_body = app.config.limits.max_body;
    let create = warp::path!("api" / "jobs")
        .and(warp::post())
        .and(with_app(Arc::clone(&app)))
        .and(trigger::idempotency_header())
        .and(json_body(max_body))
        .then(create);
    let list = warp::path!("api" / "jobs")
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .and(warp::query::<Query>())
        .then(list);
    let one = warp::path!("api" / "jobs" / i64)
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .then(get);
    let cancel = warp::path!("api" / "jobs" / i64 / "cancel")
        .and(warp::post())
        .and(with_app(Arc::clone(&app)))
        .then(|id, app: Arc<App>| async move { answer(cancel_job(&app, id).await) });
    let force = warp::path!("api" / "jobs" / i64 / "force")
        .and(warp::post())
        .and(with_app(Arc::clone(&app)))
        .then(|id, app: Arc<App>| async move { answer(force_job(&app, id).await) });
    let retry = warp::path!("api" / "jobs" / i64 / "retry")
        .and(warp::post())
        .and(with_app(app))
        .and(trigger::idempotency_header())
        .then(|id, app: Arc<App>, key: Option<HeaderValue>| async move {
            answer(retry_job(&app, id, key.as_ref()).await)
        });
    create
        .or(list)
        .unify()
        .or(one)
        .unify()
        .or(cancel)
        .unify()
        .or(force)
        .unify()
        .or(retry)
        .unify()
        .boxed()
}

async fn create(app: Arc<App>, key: Option<HeaderValue>, body: JsonBody) -> Response {
    let created = async {
        let key = trigger::idempotency_key(key.as_ref())?;
        let (doc, raw) = body?;
        let accepted = trigger::accept(&app, &doc, &raw, key).await?;
        let (location, body) = match accepted.created {
            Created::Job(job) => (
                format!("/api/jobs/{}", job.id),
                serde_json::to_string(&JobView::from(*job)),
            ),
            Created::Schedule(schedule) => (
                format!("/api/schedules/{}", schedule.id),
                serde_json::to_string(&super::schedules::view(*schedule)),
            ),
        };
        // A retry gets the very body the first request got.
        let body = match accepted.first_response {
            Some(first) => first,
            None => body.map_err(|error| Problem::internal(error.to_string()))?,
        };
        let mut response = super::json_text(StatusCode::CREATED, body);
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Ok(response)
    };
    answer(created.await)
}

/// Listing filters shared with `/api/robots/{address}/jobs`.
pub(super) async fn list_jobs(
    app: &App,
    query: &Query,
    robot: Option<RobotAddress>,
) -> Result<Response, Problem> {
    let limit = query::limit(query, app.config.limits.max_page)?;
    let status = query
        .get("status")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            JobStatus::parse(s).ok_or_else(|| {
                Problem::bad_request(
                    "bad_status",
                    "status must be one of Pending, Executed, Succeeded, Failed, Cancelled",
                )
            })
        })
        .transpose()?;
    let robot = robot.or_else(|| {
        query
            .get("robot")
            .filter(|r| !r.trim().is_empty())
            .map(|r| RobotAddress::new(r))
    });
    let pool = match query.get("pool").filter(|p| !p.is_empty()) {
        None => None,
        Some(pool) if rpa_packages::is_valid_pool_name(pool) => Some(pool.clone()),
        Some(_) => {
            return Err(Problem::bad_request(
                "bad_pool",
                "pool must be 1 to 64 letters, digits, '.', '_' or '-'",
            ));
        }
    };
    let filter = JobFilter {
        status,
        robot_address: robot.map(RobotAddress::into_string),
        pool,
        schedule_id: None,
        before: query::after_id(query)?,
        limit: i64::try_from(limit + 1).unwrap_or(i64::MAX),
    };
    let jobs = app.db.read(move |conn| conn.jobs(&filter)).await?;
    let (jobs, next_after) = query::page(jobs, limit, |job| job.id);
    Ok(json(
        StatusCode::OK,
        &Page {
            items: jobs.into_iter().map(JobView::from).collect::<Vec<_>>(),
            next_after,
        },
    ))
}

async fn list(app: Arc<App>, query: Query) -> Response {
    answer(list_jobs(&app, &query, None).await)
}

async fn get(id: i64, app: Arc<App>) -> Response {
    let found = app
        .db
        .read(move |conn| {
            let Some(job) = conn.job(id)? else {
                return Ok(None);
            };
            let events = conn.job_events(id)?;
            Ok(Some((job, events)))
        })
        .await;
    answer(match found {
        Ok(Some((job, events))) => Ok(json(StatusCode::OK, &JobView::with_events(job, events))),
        Ok(None) => Err(Problem::not_found(format!("no job {id}"))),
        Err(error) => Err(error.into()),
    })
}

/// Outcome of a cancel or force, shared with the old routes.
pub(super) fn change_result(
    id: i64,
    outcome: Result<ChangeOutcome, rpa_store::StoreError>,
    verb: &str,
) -> Result<rpa_store::JobRecord, Problem> {
    match outcome? {
        ChangeOutcome::Changed(job) => Ok(*job),
        ChangeOutcome::NotFound => Err(Problem::not_found(format!("no job {id}"))),
        ChangeOutcome::Conflict(status) => Err(Problem::conflict(
            "job_not_pending",
            format!(
                "job {id} is {}: only a Pending job can be {verb}",
                status.as_str()
            ),
        )),
    }
}

pub(super) async fn cancel(app: &App, id: i64) -> Result<rpa_store::JobRecord, Problem> {
    let now = chrono::Utc::now();
    let outcome = app.db.write(move |tx| tx.cancel_job(id, now)).await;
    let job = change_result(id, outcome, "cancelled")?;
    log::info!("job {id} cancelled by request");
    Ok(job)
}

pub(super) async fn force(app: &App, id: i64) -> Result<rpa_store::JobRecord, Problem> {
    let job = change_result(id, app.dispatcher.force(id).await, "forced")?;
    log::info!("job {id} forced by request: now {}", job.status.as_str());
    Ok(job)
}

async fn cancel_job(app: &App, id: i64) -> Result<Response, Problem> {
    Ok(json(StatusCode::OK, &JobView::from(cancel(app, id).await?)))
}

async fn force_job(app: &App, id: i64) -> Result<Response, Problem> {
    Ok(json(StatusCode::OK, &JobView::from(force(app, id).await?)))
}

/// `POST /api/jobs/{id}/retry`: a Failed or Cancelled job run again as a new job, due now.
async fn retry_job(app: &App, id: i64, key: Option<&HeaderValue>) -> Result<Response, Problem> {
    let key = trigger::idempotency_key(key)?.map(|key| IdempotencyKey {
        key,
        // The same key for another job's retry, or for a trigger, is a different request.
        request_hash: trigger::digest(format!("POST /api/jobs/{id}/retry").as_bytes()),
    });
    trigger::packages_writable(app)?;
    let now = chrono::Utc::now();
    let remembered = key.as_ref().map(|k| k.key.clone());
    let outcome = app
        .db
        .write(move |tx| {
            let outcome = tx.retry_job(id, now, key.as_ref())?;
            if let RetryJob::Created(created) = &outcome {
                let view = JobView::from(created.clone());
                trigger::remember(tx, remembered.as_deref(), || serde_json::to_string(&view))?;
            }
            Ok(outcome)
        })
        .await?;
    let (job, body) = match outcome {
        RetryJob::Created(job) => {
            log::info!("job {} created by request as a retry of job {id}", job.id);
            app.dispatcher.wake(job.id, job.run_at);
            app.package_files.notify();
            let body = serde_json::to_string(&JobView::from(job.clone()))
                .map_err(|error| Problem::internal(error.to_string()))?;
            (job, body)
        }
        RetryJob::Replayed(prior) => match prior.created {
            Created::Job(job) => {
                let body = match prior.response {
                    Some(body) => body,
                    None => serde_json::to_string(&JobView::from((*job).clone()))
                        .map_err(|error| Problem::internal(error.to_string()))?,
                };
                (*job, body)
            }
            Created::Schedule(_) => return Err(trigger::key_reused()),
        },
        RetryJob::KeyConflict => return Err(trigger::key_reused()),
        RetryJob::NotFound => return Err(Problem::not_found(format!("no job {id}"))),
        RetryJob::Conflict(status) => {
            return Err(Problem::conflict(
                "job_not_finished",
                format!(
                    "job {id} is {}: only a Failed or Cancelled job can be retried",
                    status.as_str()
                ),
            ));
        }
    };
    let mut response = super::json_text(StatusCode::CREATED, body);
    if let Ok(value) = HeaderValue::from_str(&format!("/api/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}
