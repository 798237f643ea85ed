//! `/api/schedules`: recurring triggers (created through `POST /api/jobs` with a `cron`).

use std::sync::Arc;

use chrono::Utc;
use rpa_protocol::RobotAddress;
use rpa_store::{JobFilter, PauseOutcome, ScheduleFilter, ScheduleRecord, StopOutcome};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::query::{self, Query};
use super::{answer, json, with_app};
use crate::app::App;
use crate::http::problem::Problem;
use crate::http::views::{Page, ScheduleView};

/// Instances and events shown with one schedule.
const HISTORY: i64 = 20;

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let list = warp::path!("api" / "schedules")
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .and(warp::query::<Query>())
        .then(|app: Arc<App>, query: Query| async move { answer(list(&app, &query).await) });
    let one = warp::path!("api" / "schedules" / i64)
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .then(|id, app: Arc<App>| async move { answer(get(&app, id).await) });
    let delete = warp::path!("api" / "schedules" / i64)
        .and(warp::delete())
        .and(with_app(Arc::clone(&app)))
        .then(|id, app: Arc<App>| async move { answer(delete(&app, id).await) });
    let pause = warp::path!("api" / "schedules" / i64 / "pause")
        .and(warp::post())
        .and(with_app(Arc::clone(&app)))
        .then(|id, app: Arc<App>| async move { answer(set_paused(&app, id, true).await) });
    let resume = warp::path!("api" / "schedules" / i64 / "resume")
        .and(warp::post())
        .and(with_app(app))
        .then(|id, app: Arc<App>| async move { answer(set_paused(&app, id, false).await) });
    list.or(one)
        .unify()
        .or(delete)
        .unify()
        .or(pause)
        .unify()
        .or(resume)
        .unify()
        .boxed()
}

/// The schedule as the API shows it, with its next occurrences (none once inactive).
pub(super) fn view(schedule: ScheduleRecord) -> ScheduleView {
    ScheduleView::at(schedule, Utc::now())
}

async fn list(app: &App, query: &Query) -> Result<Response, Problem> {
    let limit = query::limit(query, app.config.limits.max_page)?;
    let filter = ScheduleFilter {
        active: query::flag(query, "active")?,
        robot_address: query
            .get("robot")
            .filter(|r| !r.trim().is_empty())
            .map(|r| RobotAddress::new(r).into_string()),
        before: query::after_id(query)?,
        limit: i64::try_from(limit + 1).unwrap_or(i64::MAX),
    };
    let schedules = app.db.read(move |conn| conn.schedules(&filter)).await?;
    let (schedules, next_after) = query::page(schedules, limit, |s| s.id);
    Ok(json(
        StatusCode::OK,
        &Page {
            items: schedules.into_iter().map(view).collect::<Vec<_>>(),
            next_after,
        },
    ))
}

async fn get(app: &App, id: i64) -> Result<Response, Problem> {
    let found = app
        .db
        .read(move |conn| {
            let Some(schedule) = conn.schedule(id)? else {
                return Ok(None);
            };
            let instances = conn.jobs(&JobFilter {
                schedule_id: Some(id),
                limit: HISTORY,
                ..JobFilter::default()
            })?;
            let events = conn.schedule_events(id, HISTORY)?;
            Ok(Some((schedule, instances, events)))
        })
        .await?;
    let (schedule, instances, events) =
        found.ok_or_else(|| Problem::not_found(format!("no schedule {id}")))?;
    Ok(json(
        StatusCode::OK,
        &view(schedule).with_history(instances, events),
    ))
}

async fn delete(app: &App, id: i64) -> Result<Response, Problem> {
    let now = Utc::now();
    let outcome = app.db.write(move |tx| tx.stop_schedule(id, now)).await?;
    let schedule = match outcome {
        StopOutcome::Stopped(schedule, cancelled) => {
            log::info!(
                "schedule {id} deleted by request; pending instances cancelled: {cancelled:?}"
            );
            schedule
        }
        StopOutcome::AlreadyStopped(schedule) => schedule,
        StopOutcome::NotFound => return Err(Problem::not_found(format!("no schedule {id}"))),
    };
    Ok(json(StatusCode::OK, &view(*schedule)))
}

/// `POST /api/schedules/{id}/pause` (`pausing`) and `/resume`.
async fn set_paused(app: &App, id: i64, pausing: bool) -> Result<Response, Problem> {
    let now = Utc::now();
    let outcome = if pausing {
        app.db.write(move |tx| tx.pause_schedule(id, now)).await?
    } else {
        app.db
            .write(move |tx| crate::tasks::recurring_jobs::resume(tx, id, now))
            .await?
    };
    let verb = if pausing { "paused" } else { "resumed" };
    let schedule = match outcome {
        PauseOutcome::Changed(schedule) => {
            log::info!(
                "schedule {id} {verb} by request; next occurrence {}",
                schedule
                    .next_run_at
                    .map_or("none".to_owned(), crate::http::views::time)
            );
            if let Some(next) = schedule.next_run_at {
                app.dispatcher.wake_schedule(id, next);
            }
            schedule
        }
        PauseOutcome::Unchanged(schedule) => schedule,
        PauseOutcome::Inactive(schedule) => {
            let why = match schedule.ended_reason.as_deref() {
                Some("deleted") => "it was deleted".to_owned(),
                Some(reason) => format!("it ended ({reason})"),
                None => "it is not active".to_owned(),
            };
            return Err(Problem::conflict(
                "schedule_inactive",
                format!("schedule {id} cannot be {verb}: {why}"),
            ));
        }
        PauseOutcome::NotFound => return Err(Problem::not_found(format!("no schedule {id}"))),
    };
    Ok(json(StatusCode::OK, &view(*schedule)))
}
