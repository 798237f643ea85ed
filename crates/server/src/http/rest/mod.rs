//! The REST API (http-api.md) as warp filters. Handlers never reject: an application error is a
//! problem+json reply, so warp does not go on trying other routes. Rejections are left for
//! routing (unknown path, wrong method) and are turned into problems by [`recover`].

mod body;
mod compat;
mod credentials;
mod events;
mod health;
mod jobs;
mod metrics;
mod openapi;
mod pools;
mod query;
mod robots;
mod schedules;
mod trigger;
mod webhooks;

pub(crate) use openapi::ROUTES;

use std::convert::Infallible;
use std::sync::Arc;

use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply as _};

use crate::app::App;
use crate::http::problem::Problem;

/// Every REST route, boxed per module (warp's types grow compile times otherwise).
pub(crate) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    health::routes(Arc::clone(&app))
        .or(metrics::routes(Arc::clone(&app)))
        .unify()
        .or(openapi::routes(Arc::clone(&app)))
        .unify()
        .or(robots::routes(Arc::clone(&app)))
        .unify()
        .or(pools::routes(Arc::clone(&app)))
        .unify()
        .or(credentials::routes(Arc::clone(&app)))
        .unify()
        .or(jobs::routes(Arc::clone(&app)))
        .unify()
        .or(schedules::routes(Arc::clone(&app)))
        .unify()
        .or(events::routes(Arc::clone(&app)))
        .unify()
        .or(webhooks::routes(Arc::clone(&app)))
        .unify()
        .or(compat::routes(app))
        .unify()
        // Last: the page's routes only see what no API route took.
        .or(crate::http::ui::routes())
        .unify()
        .recover(recover)
        .unify()
        .boxed()
}

fn with_app(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&app))
}

/// A handler's outcome as the answer: its response, or its problem as problem+json.
pub(super) fn answer(outcome: Result<Response, Problem>) -> Response {
    outcome.into_response()
}

/// A JSON answer.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => json_text(status, text),
        Err(error) => {
            Problem::internal(format!("cannot encode the answer: {error}")).into_response()
        }
    }
}

/// A JSON answer already serialized.
pub(crate) fn json_text(status: StatusCode, text: String) -> Response {
    let mut response = Response::new(text.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Turns what warp could not route into problem documents.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let problem = if rejection.is_not_found() {
        Problem::not_found("no such route")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            "this route does not take that method",
        )
    } else if let Some(error) = rejection.find::<warp::reject::InvalidQuery>() {
        Problem::bad_request(
            "bad_query",
            format!("the query string cannot be read: {error}"),
        )
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some()
        || rejection.find::<warp::reject::MissingHeader>().is_some()
    {
        Problem::bad_request("bad_header", "a request header is missing or malformed")
    } else {
        log::warn!("unhandled rejection: {rejection:?}");
        Problem::bad_request("bad_request", "the request cannot be handled")
    };
    Ok(problem.into_response())
}
