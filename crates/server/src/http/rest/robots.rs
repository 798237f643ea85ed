//! `/api/robots`: what is known of the robots and what they said.

use std::sync::Arc;

use rpa_protocol::RobotAddress;
use rpa_store::{PutRobot, RobotFilter};
use rpa_validation::{FieldError, FieldErrors};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::body::{JsonBody, json_body};
use super::query::{self, Query};
use super::{answer, json, with_app};
use crate::app::App;
use crate::http::problem::Problem;
use crate::http::views::{MessageView, Page, RobotView};
use crate::logging::Untrusted;

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let list = warp::path!("api" / "robots")
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .and(warp::query::<Query>())
        .then(|app: Arc<App>, query: Query| async move { answer(list(&app, &query).await) });
    let one = warp::path!("api" / "robots" / String)
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .then(|address: String, app: Arc<App>| async move { answer(get(&app, &address).await) });
    let messages = warp::path!("api" / "robots" / String / "messages")
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .and(warp::query::<Query>())
        .then(|address: String, app: Arc<App>, query: Query| async move {
            answer(messages(&app, &address, &query).await)
        });
    let put = warp::path!("api" / "robots" / String)
        .and(warp::put())
        .and(with_app(Arc::clone(&app)))
        .and(json_body(app.config.limits.max_body))
        .then(
            |address: String, app: Arc<App>, body: JsonBody| async move {
                answer(put(&app, &address, body).await)
            },
        );
    let jobs = warp::path!("api" / "robots" / String / "jobs")
        .and(warp::get())
        .and(with_app(app))
        .and(warp::query::<Query>())
        .then(|address: String, app: Arc<App>, query: Query| async move {
            answer(jobs(&app, &address, &query).await)
        });
    list.or(one)
        .unify()
        .or(put)
        .unify()
        .or(messages)
        .unify()
        .or(jobs)
        .unify()
        .boxed()
}

/// The path segment as the robot's address: percent-decoded, and a MAC in any spelling.
pub(super) fn address(segment: &str) -> RobotAddress {
    RobotAddress::new(&crate::http::percent::decode(segment, false))
}

/// Longest robot address, as the metadata allows (characters).
const MAX_ADDRESS: usize = rpa_protocol::MAX_FIELD_CHARS;
/// Fixed paths under `/api/robots/` that are never robots (http-api.md).
const NOT_ADDRESSES: [&str; 2] = ["package", "connect"];

/// An address a robot could register as (as its metadata is checked), and not a fixed path:
/// what an operator may record or enrol.
pub(super) fn check_address(address: &RobotAddress) -> Result<(), FieldError> {
    let text = address.as_str();
    let problem = if text.trim().is_empty() {
        Some("Must not be blank.".to_owned())
    } else if text.chars().count() > MAX_ADDRESS {
        Some(format!("Must be at most {MAX_ADDRESS} characters."))
    } else if text
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        Some("Must not hold control characters.".to_owned())
    } else if NOT_ADDRESSES.contains(&text) {
        Some(format!("/api/robots/{text} is a route, not a robot."))
    } else {
        None
    };
    match problem {
        Some(message) => Err(FieldError::invalid("robot_address", message)),
        None => Ok(()),
    }
}

/// `PUT /api/robots/{address}` `{"robot_name"}`: records a robot before its first
/// registration (201), or renames the robot (200; a no-op when the name is the same). A robot
/// that registers later reports its own name, which then replaces this one.
async fn put(app: &App, segment: &str, body: JsonBody) -> Result<Response, Problem> {
    let address = address(segment);
    let mut errors = FieldErrors::new();
    if let Err(error) = check_address(&address) {
        errors.push(error);
    }
    let (doc, _) = body?;
    let name = match doc.as_object() {
        None => {
            errors.push(FieldError::invalid("", "Must be a JSON object."));
            None
        }
        Some(object) => {
            // Strict: a field this route does not know is a mistake to point out.
            for key in object.keys().filter(|key| *key != "robot_name") {
                errors.push(FieldError::invalid(
                    key.clone(),
                    "Unknown field: only robot_name is taken.",
                ));
            }
            match rpa_packages::validate_robot_name(object) {
                Ok(name) => Some(name),
                Err(more) => {
                    errors.extend(more);
                    None
                }
            }
        }
    };
    let (Some(name), true) = (name, errors.is_empty()) else {
        return Err(Problem::validation(errors));
    };
    let now = chrono::Utc::now();
    let key = address.as_str().to_owned();
    let outcome = app
        .db
        .write(move |tx| tx.put_robot(&key, &name, now))
        .await?;
    let (status, robot) = match outcome {
        PutRobot::Created(robot) => {
            log::info!(
                "robot {} recorded by request as {}",
                Untrusted(&robot.address),
                Untrusted(&robot.name)
            );
            (StatusCode::CREATED, robot)
        }
        PutRobot::Renamed(robot) => {
            log::info!(
                "robot {} renamed by request to {}",
                Untrusted(&robot.address),
                Untrusted(&robot.name)
            );
            (StatusCode::OK, robot)
        }
        PutRobot::Unchanged(robot) => (StatusCode::OK, robot),
    };
    let location = format!(
        "/api/robots/{}",
        crate::http::percent::encode_segment(&robot.address)
    );
    let mut response = json(status, &RobotView::from(*robot));
    if status == StatusCode::CREATED
        && let Ok(value) = HeaderValue::from_str(&location)
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn list(app: &App, query: &Query) -> Result<Response, Problem> {
    let limit = query::limit(query, app.config.limits.max_page)?;
    let filter = RobotFilter {
        online: query::flag(query, "online")?,
        // Normalised like the addresses it is compared with.
        after: query
            .get("after")
            .filter(|a| !a.is_empty())
            .map(|a| RobotAddress::new(a).into_string()),
        limit: i64::try_from(limit + 1).unwrap_or(i64::MAX),
    };
    let (robots, mut pools) = app
        .db
        .read(move |conn| {
            let robots = conn.robots(&filter)?;
            let addresses: Vec<String> = robots.iter().map(|r| r.address.clone()).collect();
            Ok((robots, conn.robot_pools(&addresses)?))
        })
        .await?;
    let (robots, next_after) = query::page(robots, limit, |robot| robot.address.clone());
    Ok(json(
        StatusCode::OK,
        &Page {
            items: robots
                .into_iter()
                .map(|robot| {
                    let of = pools.remove(&robot.address).unwrap_or_default();
                    RobotView::from(robot).with_pools(of)
                })
                .collect::<Vec<_>>(),
            next_after,
        },
    ))
}

async fn known(app: &App, address: &RobotAddress) -> Result<rpa_store::RobotRecord, Problem> {
    let key = address.as_str().to_owned();
    app.db
        .read(move |conn| conn.robot(&key))
        .await?
        .ok_or_else(|| Problem::not_found(format!("no robot with address {address}")))
}

async fn get(app: &App, segment: &str) -> Result<Response, Problem> {
    let robot = known(app, &address(segment)).await?;
    let key = vec![robot.address.clone()];
    let mut pools = app.db.read(move |conn| conn.robot_pools(&key)).await?;
    let of = pools.remove(&robot.address).unwrap_or_default();
    Ok(json(StatusCode::OK, &RobotView::from(robot).with_pools(of)))
}

async fn messages(app: &App, segment: &str, query: &Query) -> Result<Response, Problem> {
    let address = address(segment);
    known(app, &address).await?;
    let limit = query::limit(query, app.config.limits.max_page)?;
    let before = query::after_id(query)?;
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let key = address.into_string();
    let messages = app
        .db
        .read(move |conn| conn.robot_messages(&key, before, fetch))
        .await?;
    let (messages, next_after) = query::page(messages, limit, |m| m.id);
    Ok(json(
        StatusCode::OK,
        &Page {
            items: messages
                .into_iter()
                .map(MessageView::from)
                .collect::<Vec<_>>(),
            next_after,
        },
    ))
}

async fn jobs(app: &App, segment: &str, query: &Query) -> Result<Response, Problem> {
    let address = address(segment);
    known(app, &address).await?;
    super::jobs::list_jobs(app, query, Some(address)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_paths_are_decoded_and_normalised() {
        assert_eq!(
            address("00%3A1a%3Aff%3Adb%3A45%3Ac2").as_str(),
            "001AFFDB45C2"
        );
        assert_eq!(address("00:1a:ff:db:45:c2").as_str(), "001AFFDB45C2");
        assert_eq!(address("free%20text").as_str(), "free text");
        assert_eq!(address("bad%zz").as_str(), "bad%zz");
    }
}
