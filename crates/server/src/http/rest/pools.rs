//! Robot pools (docs/POOLS.md): `GET /api/pools`, `GET /api/pools/{name}`, and a robot's
//! membership, `PUT /api/robots/{address}/pools`.

use std::sync::Arc;

use chrono::Utc;
use rpa_packages::{POOL_NAME_RULE, is_valid_pool_name};
use rpa_protocol::RobotAddress;
use rpa_store::{PoolMember, PoolSummary};
use rpa_validation::{FieldError, FieldErrors};
use serde::Serialize;
use serde_json::Value;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::body::{JsonBody, json_body};
use super::{answer, json, with_app};
use crate::app::App;
use crate::http::problem::Problem;
use crate::http::views::RobotView;

/// Pools one robot may belong to at most.
const MAX_POOLS_PER_ROBOT: usize = 100;

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let max_body = app.config.limits.max_body;
    let list = warp::path!("api" / "pools")
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .then(|app: Arc<App>| async move { answer(list(&app).await) });
    let one = warp::path!("api" / "pools" / String)
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .then(|name: String, app: Arc<App>| async move { answer(get(&app, &name).await) });
    let set = warp::path!("api" / "robots" / String / "pools")
        .and(warp::put())
        .and(with_app(app))
        .and(json_body(max_body))
        .then(
            |address: String, app: Arc<App>, body: JsonBody| async move {
                answer(async { set_pools(&app, &address, body?.0).await }.await)
            },
        );
    list.or(one).unify().or(set).unify().boxed()
}

#[derive(Serialize)]
struct PoolView {
    name: String,
    robots: i64,
    online: i64,
    free: i64,
    waiting_jobs: i64,
    /// Only for one pool: its robots.
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<MemberView>>,
}

#[derive(Serialize)]
struct MemberView {
    robot_address: String,
    robot_name: String,
    online: bool,
    free: bool,
    last_seen: String,
}

impl From<PoolSummary> for PoolView {
    fn from(pool: PoolSummary) -> PoolView {
        PoolView {
            name: pool.name,
            robots: pool.robots,
            online: pool.online,
            free: pool.free,
            waiting_jobs: pool.waiting_jobs,
            members: None,
        }
    }
}

impl From<PoolMember> for MemberView {
    fn from(member: PoolMember) -> MemberView {
        MemberView {
            robot_address: member.address,
            robot_name: member.name,
            online: member.online,
            free: member.free,
            last_seen: crate::http::views::time(member.last_seen),
        }
    }
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

async fn list(app: &App) -> Result<Response, Problem> {
    let busy = app.dispatcher.policy().pool_busy_timeout;
    let now = Utc::now();
    let pools = app.db.read(move |conn| conn.pools(now, busy)).await?;
    Ok(json(
        StatusCode::OK,
        &Items {
            items: pools.into_iter().map(PoolView::from).collect(),
        },
    ))
}

async fn get(app: &App, segment: &str) -> Result<Response, Problem> {
    let name = crate::http::percent::decode(segment, false);
    if !is_valid_pool_name(&name) {
        return Err(Problem::validation(FieldErrors::from(FieldError::invalid(
            "name",
            POOL_NAME_RULE,
        ))));
    }
    let busy = app.dispatcher.policy().pool_busy_timeout;
    let now = Utc::now();
    let (summary, members) = app.db.read(move |conn| conn.pool(&name, now, busy)).await?;
    Ok(json(
        StatusCode::OK,
        &PoolView {
            members: Some(members.into_iter().map(MemberView::from).collect()),
            ..PoolView::from(summary)
        },
    ))
}

/// `{"pools": [names]}`: every problem at once, each at its index.
fn pools_of(body: &Value) -> Result<Vec<String>, FieldErrors> {
    let mut errors = FieldErrors::new();
    let Some(object) = body.as_object() else {
        errors.push(FieldError::invalid("", "Must be a JSON object with pools."));
        return Err(errors);
    };
    for key in object.keys().filter(|key| *key != "pools") {
        errors.push(FieldError::invalid(key, "Is not a field of this request."));
    }
    let mut pools = Vec::new();
    match object.get("pools") {
        None | Some(Value::Null) => {
            errors.push(FieldError::missing("pools", "This field is required."));
        }
        Some(Value::Array(items)) if items.len() > MAX_POOLS_PER_ROBOT => {
            errors.push(FieldError::invalid(
                "pools",
                format!("Must hold at most {MAX_POOLS_PER_ROBOT} pools."),
            ));
        }
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(name) if is_valid_pool_name(name) => pools.push(name.to_owned()),
                    _ => errors.push(FieldError::invalid(
                        format!("pools[{index}]"),
                        POOL_NAME_RULE,
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::invalid(
            "pools",
            "Must be an array of pool names.",
        )),
    }
    if errors.is_empty() {
        Ok(pools)
    } else {
        Err(errors)
    }
}

/// As for triggers: a body that cannot be read is 400/413/415, one that is not a pool list 422,
/// and then an unknown robot 404.
async fn set_pools(app: &App, segment: &str, body: Value) -> Result<Response, Problem> {
    let address = RobotAddress::new(&crate::http::percent::decode(segment, false));
    let pools = pools_of(&body).map_err(Problem::validation)?;
    let now = Utc::now();
    let key = address.as_str().to_owned();
    let changed = app
        .db
        .write(move |tx| {
            let Some(robot) = tx.set_robot_pools(&key, &pools, now)? else {
                return Ok(None);
            };
            // A robot that joins a pool may take what waits there.
            let woken = tx.wake_pools_of(&key, now, rpa_store::WAKE_LIMIT)?;
            Ok(Some((robot, woken)))
        })
        .await?;
    let Some((robot, woken)) = changed else {
        return Err(Problem::not_found(format!(
            "no robot with address {address}"
        )));
    };
    log::info!(
        "robot {address}: pools set by request: [{}]",
        robot.pools.join(", ")
    );
    for id in woken {
        app.dispatcher.wake(id, now);
    }
    Ok(json(
        StatusCode::OK,
        &RobotView::from(robot.robot).with_pools(robot.pools),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pool_lists_are_checked_item_by_item() {
        assert_eq!(
            pools_of(&json!({"pools": ["a", "b.c_d-1"]})).unwrap(),
            ["a", "b.c_d-1"]
        );
        assert_eq!(
            pools_of(&json!({"pools": []})).unwrap(),
            Vec::<String>::new()
        );
        let fields = |body| {
            pools_of(&body)
                .unwrap_err()
                .iter()
                .map(|e| e.field.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(json!({"pools": ["ok", "not ok", 3]})),
            ["pools[1]", "pools[2]"]
        );
        assert_eq!(fields(json!({})), ["pools"]);
        assert_eq!(fields(json!({"pools": "a"})), ["pools"]);
        assert_eq!(fields(json!({"pools": [], "x": 1})), ["x"]);
    }
}
