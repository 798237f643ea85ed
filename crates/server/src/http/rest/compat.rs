//! The routes the original service's clients call, with its exact answers (http-api.md,
//! "Routes kept for existing clients"). Errors are problems that also carry the old `Alert`.

use std::sync::Arc;

use serde_json::json;
use warp::Filter;
use warp::Reply as _;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::body::{JsonBody, json_body};
use super::trigger;
use super::{jobs, json, with_app};
use crate::app::App;
use crate::http::problem::Problem;
use rpa_store::Created;

const CANCEL_FAILED: &str = "Failed to cancel job";
const FORCE_FAILED: &str = "Failed to force job";
const MISSING_DATA: &str = "Package missing required data";
const NOT_RECEIVED: &str = "Package hasn't been received successfully";

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    // `/jobs/cancel/5` and `/jobs/cancel/5/` both match: warp's `end` takes a trailing slash,
    // as Express did.
    let slash = warp::path::end();
    let cancel = warp::path("jobs")
        .or(warp::path!("api" / "jobs" / ..))
        .unify()
        .and(warp::path("cancel"))
        .and(warp::path::param::<String>())
        .and(slash)
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .then(|id: String, app: Arc<App>| async move { cancel(&app, &id).await });
    let force = warp::path("jobs")
        .or(warp::path!("api" / "jobs" / ..))
        .unify()
        .and(warp::path("force"))
        .and(warp::path::param::<String>())
        .and(slash)
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .then(|id: String, app: Arc<App>| async move { force(&app, &id).await });
    let trigger = warp::path!("robots" / "package")
        .or(warp::path!("api" / "robots" / "package"))
        .unify()
        .or(warp::path!("pkg"))
        .unify()
        .and(warp::post())
        .and(with_app(app.clone()))
        .and(trigger::idempotency_header())
        .and(json_body(app.config.limits.max_body))
        .then(trigger);
    cancel.or(force).unify().or(trigger).unify().boxed()
}

/// The id as the old routes took it: the text of the URL, which must be a job id.
fn job_id(text: &str) -> Result<i64, Problem> {
    text.parse::<i64>()
        .map_err(|_| Problem::not_found(format!("no job {text:?}")))
}

async fn cancel(app: &App, id_text: &str) -> Response {
    let outcome = match job_id(id_text) {
        Ok(id) => jobs::cancel(app, id).await,
        Err(problem) => Err(problem),
    };
    old_answer(
        id_text,
        outcome,
        "Cancelled Job successfully",
        CANCEL_FAILED,
    )
}

async fn force(app: &App, id_text: &str) -> Response {
    let outcome = match job_id(id_text) {
        Ok(id) => jobs::force(app, id).await,
        Err(problem) => Err(problem),
    };
    old_answer(
        id_text,
        outcome,
        "Forced to be executed successfully",
        FORCE_FAILED,
    )
}

/// The old routes' answers: `{"Job": "<id as in the URL>", "Status": ...}`, or a problem that
/// carries the old `Alert`.
fn old_answer(
    id_text: &str,
    outcome: Result<rpa_store::JobRecord, Problem>,
    status: &str,
    alert: &'static str,
) -> Response {
    match outcome {
        Ok(_) => json(StatusCode::OK, &json!({"Job": id_text, "Status": status})),
        Err(problem) => problem.with_alert(alert).into_response(),
    }
}

async fn trigger(app: Arc<App>, key: Option<warp::http::HeaderValue>, body: JsonBody) -> Response {
    let result = async {
        let key = trigger::idempotency_key(key.as_ref()).map_err(|p| p.with_alert(NOT_RECEIVED))?;
        let (doc, raw) = body.map_err(|p| p.with_alert(NOT_RECEIVED))?;
        match trigger::accept(&app, &doc, &raw, key).await {
            Ok(accepted) => Ok(accepted.created),
            Err(problem) => {
                let alert = if problem.errors.any_missing() {
                    MISSING_DATA
                } else {
                    NOT_RECEIVED
                };
                Err(problem.with_alert(alert))
            }
        }
    };
    match result.await {
        Ok(Created::Job(job)) => json(
            StatusCode::OK,
            &json!({"Job": job.id.to_string(), "Status": "Server sent package to scheduler"}),
        ),
        // The old clients never sent a cron schedule; a new one that does gets the schedule id.
        Ok(Created::Schedule(schedule)) => json(
            StatusCode::OK,
            &json!({"Schedule": schedule.id.to_string(), "Status": "Server sent package to scheduler"}),
        ),
        Err(problem) => problem.into_response(),
    }
}
