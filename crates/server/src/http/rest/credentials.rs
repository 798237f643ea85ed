//! `/api/robots/{address}/credentials`: robot credentials (docs/SECURITY.md). A credential's
//! token is made here, shown once in the answer to its creation, and stored only as its hash.
//!
//! Like webhooks, credentials are managed only by holders of an API token, or from this machine
//! when the API is open: an open API must not let anyone enrol someone else's robot and lock the
//! real one out.

use std::sync::Arc;

use chrono::Utc;
use rpa_store::{CreateCredential, NewCredential};
use rpa_validation::{FieldError, FieldErrors};
use serde_json::Value;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::body::{JsonBody, json_body};
use super::robots::{address, check_address};
use super::webhooks::{Managed, managed};
use super::{answer, json, with_app};
use crate::app::App;
use crate::http::listener::Peer;
use crate::http::problem::Problem;
use crate::http::robot_token;
use crate::http::views::CredentialView;

/// Credentials per robot at most: enough to rotate, few enough to keep an eye on.
const MAX_PER_ROBOT: i64 = 10;
const MAX_DESCRIPTION: usize = 500;

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let max_body = app.config.limits.max_body;
    let peer = warp::ext::optional::<Peer>();
    let create = warp::path!("api" / "robots" / String / "credentials")
        .and(warp::post())
        .and(with_app(Arc::clone(&app)))
        .and(peer)
        .and(json_body(max_body))
        .then(
            |segment: String, app: Arc<App>, peer, body: JsonBody| async move {
                answer(
                    async { create(&app, managed(&app, peer, WHAT)?, &segment, body?).await }.await,
                )
            },
        );
    let list = warp::path!("api" / "robots" / String / "credentials")
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .and(peer)
        .then(|segment: String, app: Arc<App>, peer| async move {
            answer(async { list(&app, managed(&app, peer, WHAT)?, &segment).await }.await)
        });
    let one = warp::path!("api" / "robots" / String / "credentials" / i64)
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .and(peer)
        .then(|segment: String, id: i64, app: Arc<App>, peer| async move {
            answer(async { get(&app, managed(&app, peer, WHAT)?, &segment, id).await }.await)
        });
    let revoke = warp::path!("api" / "robots" / String / "credentials" / i64)
        .and(warp::delete())
        .and(with_app(app))
        .and(peer)
        .then(|segment: String, id: i64, app: Arc<App>, peer| async move {
            answer(async { revoke(&app, managed(&app, peer, WHAT)?, &segment, id).await }.await)
        });
    create
        .or(list)
        .unify()
        .or(one)
        .unify()
        .or(revoke)
        .unify()
        .boxed()
}

/// What the 403 of an open API names.
const WHAT: &str = "robot credentials";

fn description(body: &Value) -> Result<String, FieldErrors> {
    let Some(object) = body.as_object() else {
        return Err(FieldError::invalid("", "Must be a JSON object.").into());
    };
    // Strict: a field this route does not know is a mistake to point out, not to ignore.
    let unknown: FieldErrors = object
        .keys()
        .filter(|key| *key != "description")
        .map(|key| FieldError::invalid(key.clone(), "Unknown field: only description is taken."))
        .fold(FieldErrors::new(), |mut errors, error| {
            errors.push(error);
            errors
        });
    if !unknown.is_empty() {
        return Err(unknown);
    }
    match object.get("description") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) if text.chars().count() > MAX_DESCRIPTION => {
            Err(FieldError::invalid(
                "description",
                format!("Must be at most {MAX_DESCRIPTION} characters."),
            )
            .into())
        }
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(FieldError::invalid("description", "Must be a string.").into()),
    }
}

async fn create(
    app: &App,
    _: Managed,
    segment: &str,
    body: (Value, bytes::Bytes),
) -> Result<Response, Problem> {
    let address = address(segment);
    let mut errors = FieldErrors::new();
    if let Err(error) = check_address(&address) {
        errors.push(error);
    }
    let description = match description(&body.0) {
        Ok(description) => Some(description),
        Err(more) => {
            for error in more.into_vec() {
                errors.push(error);
            }
            None
        }
    };
    let (Some(description), true) = (description, errors.is_empty()) else {
        return Err(Problem::validation(errors));
    };
    let token = robot_token::generate()
        .map_err(|_| Problem::internal("no random bytes for a token could be had"))?;
    let new = NewCredential {
        robot_address: address.into_string(),
        description,
        token_hash: robot_token::hash(&token),
        created_at: Utc::now(),
    };
    let created = app
        .db
        .write(move |tx| tx.create_credential(&new, MAX_PER_ROBOT))
        .await?;
    let credential = match created {
        CreateCredential::Created(credential) => *credential,
        CreateCredential::TooMany => {
            return Err(Problem::validation(
                FieldError::invalid(
                    "",
                    format!("A robot has at most {MAX_PER_ROBOT} credentials: revoke one first."),
                )
                .into(),
            ));
        }
    };
    // Never the token: the id names the credential in the log.
    log::info!(
        "robot credential {} created for {}",
        credential.id,
        crate::logging::Untrusted(&credential.robot_address)
    );
    let location = format!(
        "/api/robots/{}/credentials/{}",
        crate::http::percent::encode_segment(&credential.robot_address),
        credential.id
    );
    let mut response = json(
        StatusCode::CREATED,
        &CredentialView::created(credential, token),
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The robot's stored address, or 404 when it never registered and was never recorded.
async fn known(app: &App, segment: &str) -> Result<String, Problem> {
    let address = address(segment);
    let key = address.as_str().to_owned();
    app.db
        .read(move |conn| conn.robot(&key))
        .await?
        .map(|robot| robot.address)
        .ok_or_else(|| Problem::not_found(format!("no robot with address {address}")))
}

async fn list(app: &App, _: Managed, segment: &str) -> Result<Response, Problem> {
    let address = known(app, segment).await?;
    let credentials = app.db.read(move |conn| conn.credentials(&address)).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "items": credentials.into_iter().map(CredentialView::from).collect::<Vec<_>>(),
        }),
    ))
}

fn no_credential(address: &str, id: i64) -> Problem {
    Problem::not_found(format!("robot {address} has no credential {id}"))
}

async fn get(app: &App, _: Managed, segment: &str, id: i64) -> Result<Response, Problem> {
    let address = known(app, segment).await?;
    let key = address.clone();
    let credential = app
        .db
        .read(move |conn| conn.credential(&key, id))
        .await?
        .ok_or_else(|| no_credential(&address, id))?;
    Ok(json(StatusCode::OK, &CredentialView::from(credential)))
}

async fn revoke(app: &App, _: Managed, segment: &str, id: i64) -> Result<Response, Problem> {
    let address = known(app, segment).await?;
    let now = Utc::now();
    let key = address.clone();
    let revoked = app
        .db
        .write(move |tx| tx.revoke_credential(&key, id, now))
        .await?;
    if revoked.is_none() {
        return Err(no_credential(&address, id));
    }
    // Other instances hear of it from the database (`NOTIFY` at the commit).
    crate::http::ws::close_revoked(&app.registry, id);
    log::info!(
        "robot credential {id} of {} revoked",
        crate::logging::Untrusted(&address)
    );
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}
