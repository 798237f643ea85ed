//! `/healthz` (the process answers) and `/readyz` (the database answers and the scheduler runs).

use std::sync::Arc;

use serde_json::json;
use warp::Filter;
use warp::Reply as _;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{json, with_app};
use crate::app::App;
use crate::http::problem::Problem;

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| json(StatusCode::OK, &json!({"status": "ok"})));
    let ready = warp::path!("readyz")
        .and(warp::get())
        .and(with_app(app))
        .then(|app: Arc<App>| async move { ready(&app).await });
    health.or(ready).unify().boxed()
}

async fn ready(app: &App) -> Response {
    if let Err(error) = app.db.read(|conn| conn.next_wake()).await {
        return Problem::unavailable(
            "database_unavailable",
            format!("the database does not answer: {error}"),
        )
        .into_response();
    }
    // The loop looks at the clock at least once a second between batches; ten seconds of silence means it is stuck.
    let beat = app.heartbeat.last();
    let alive = beat.is_some_and(|at| chrono::Utc::now() - at < chrono::TimeDelta::seconds(10));
    if !alive {
        return Problem::unavailable("scheduler_stalled", "the scheduler is not running")
            .into_response();
    }
    let (connections, robots) = app.registry.counts();
    json(
        StatusCode::OK,
        &json!({"status": "ready", "connections": connections, "robots_online": robots}),
    )
}
