//! `/api/webhooks`: receivers of the events (docs/EVENTS.md). The deliveries themselves are
//! `tasks::webhooks`'.
//!
//! A webhook makes the server send requests wherever its creator points it. With
//! `--api-token` only holders of a token manage them; without one the API is open, so webhooks
//! are then managed only from this machine (a loopback client), and anyone else gets 403.

use std::sync::Arc;

use chrono::Utc;
use rpa_store::{
    CreateWebhook, DELIVERIES_KEPT, EnableWebhook, NewWebhook, WebhookFilter, WebhookFormat,
};
use rpa_validation::{FieldError, FieldErrors};
use serde_json::Value;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::body::{JsonBody, json_body};
use super::query::{self, Query};
use super::{answer, json, with_app};
use crate::app::App;
use crate::http::listener::Peer;
use crate::http::problem::Problem;
use crate::http::views::{DeliveryView, Page, WebhookView};
use crate::tasks::webhooks::client::{Target, UrlError};
use crate::tasks::webhooks::signing::{Secret, SecretError};

/// Webhooks at most.
const MAX_WEBHOOKS: i64 = 100;
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 500;
const MAX_TYPES: usize = 50;
const MAX_PATTERN: usize = 100;
/// Missed events listed as skipped when a webhook is enabled again: as many as `/deliveries`
/// keeps.
const MAX_SKIPPED_LISTED: i64 = DELIVERIES_KEPT;

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let max_body = app.config.limits.max_body;
    let peer = warp::ext::optional::<Peer>();
    let create = warp::path!("api" / "webhooks")
        .and(warp::post())
        .and(with_app(Arc::clone(&app)))
        .and(peer)
        .and(json_body(max_body))
        .then(|app: Arc<App>, peer, body: JsonBody| async move {
            answer(async { create(&app, managed(&app, peer, "webhooks")?, body?).await }.await)
        });
    let list = warp::path!("api" / "webhooks")
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .and(peer)
        .and(warp::query::<Query>())
        .then(|app: Arc<App>, peer, query: Query| async move {
            answer(async { list(&app, managed(&app, peer, "webhooks")?, &query).await }.await)
        });
    let one = warp::path!("api" / "webhooks" / i64)
        .and(warp::get())
        .and(with_app(Arc::clone(&app)))
        .and(peer)
        .then(|id, app: Arc<App>, peer| async move {
            answer(async { get(&app, managed(&app, peer, "webhooks")?, id).await }.await)
        });
    let delete = warp::path!("api" / "webhooks" / i64)
        .and(warp::delete())
        .and(with_app(Arc::clone(&app)))
        .and(peer)
        .then(|id, app: Arc<App>, peer| async move {
            answer(async { delete(&app, managed(&app, peer, "webhooks")?, id).await }.await)
        });
    let enable = warp::path!("api" / "webhooks" / i64 / "enable")
        .and(warp::post())
        .and(with_app(Arc::clone(&app)))
        .and(peer)
        .then(|id, app: Arc<App>, peer| async move {
            answer(async { enable(&app, managed(&app, peer, "webhooks")?, id).await }.await)
        });
    let deliveries = warp::path!("api" / "webhooks" / i64 / "deliveries")
        .and(warp::get())
        .and(with_app(app))
        .and(peer)
        .and(warp::query::<Query>())
        .then(|id, app: Arc<App>, peer, query: Query| async move {
            answer(
                async { deliveries(&app, managed(&app, peer, "webhooks")?, id, &query).await }
                    .await,
            )
        });
    create
        .or(list)
        .unify()
        .or(one)
        .unify()
        .or(delete)
        .unify()
        .or(enable)
        .unify()
        .or(deliveries)
        .unify()
        .boxed()
}

/// Leave to manage webhooks or robot credentials: a token was required and presented (the
/// listener checked it), or the client is on this machine.
pub(super) struct Managed;

/// Leave to manage `what` (named in the 403).
pub(super) fn managed(app: &App, peer: Option<Peer>, what: &str) -> Result<Managed, Problem> {
    if !app.config.access.api_tokens.is_empty() {
        return Ok(Managed);
    }
    let loopback = peer.is_some_and(|Peer(addr)| {
        crate::tasks::webhooks::addresses::canonical(addr.ip()).is_loopback()
    });
    if loopback {
        Ok(Managed)
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!(
                "without --api-token, {what} are managed only from the server's own machine \
                 (a loopback client)"
            ),
        ))
    }
}

/// A validated creation request.
struct Request {
    url: String,
    types: Vec<String>,
    description: String,
    format: WebhookFormat,
    secret: Option<Secret>,
}

fn validate(app: &App, body: &Value) -> Result<Request, FieldErrors> {
    let mut errors = FieldErrors::new();
    let Some(object) = body.as_object() else {
        return Err(FieldError::invalid("", "Must be a JSON object.").into());
    };
    let url = match object.get("url") {
        None | Some(Value::Null) => {
            errors.push(FieldError::missing("url", "This field is required."));
            None
        }
        Some(Value::String(url)) if url.trim().is_empty() => {
            errors.push(FieldError::missing("url", "This field is required."));
            None
        }
        Some(Value::String(url)) if url.chars().count() > MAX_URL => {
            errors.push(FieldError::invalid(
                "url",
                format!("Must be at most {MAX_URL} characters."),
            ));
            None
        }
        Some(Value::String(url)) => match Target::parse(url.trim(), app.webhooks.policy()) {
            Ok(_) => Some(url.trim().to_owned()),
            Err(error) => {
                errors.push(FieldError::invalid("url", url_problem(error)));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::invalid("url", "Must be a string."));
            None
        }
    };
    let types = match object.get("types") {
        None | Some(Value::Null) => {
            errors.push(FieldError::missing("types", "This field is required."));
            None
        }
        Some(Value::Array(items)) if items.is_empty() || items.len() > MAX_TYPES => {
            errors.push(FieldError::invalid(
                "types",
                format!("Must hold 1 to {MAX_TYPES} patterns."),
            ));
            None
        }
        Some(Value::Array(items)) => {
            let mut types = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                match item.as_str().filter(|text| valid_pattern(text)) {
                    Some(text) => {
                        if !types.iter().any(|seen: &String| seen == text) {
                            types.push(text.to_owned());
                        }
                    }
                    None => errors.push(FieldError::invalid(
                        format!("types[{index}]"),
                        "Must be an event type (job.failed), a prefix of types (robot.*), or * \
                         for all.",
                    )),
                }
            }
            Some(types)
        }
        Some(_) => {
            errors.push(FieldError::invalid(
                "types",
                "Must be an array of event types.",
            ));
            None
        }
    };
    let description = match object.get("description") {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(text)) if text.chars().count() > MAX_DESCRIPTION => {
            errors.push(FieldError::invalid(
                "description",
                format!("Must be at most {MAX_DESCRIPTION} characters."),
            ));
            None
        }
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            errors.push(FieldError::invalid("description", "Must be a string."));
            None
        }
    };
    let format = match object.get("format") {
        None | Some(Value::Null) => Some(WebhookFormat::CloudEvents),
        Some(Value::String(text)) => match WebhookFormat::parse(text) {
            Some(format) => Some(format),
            None => {
                errors.push(FieldError::invalid(
                    "format",
                    "Must be \"cloudevents\" or \"chat\".",
                ));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::invalid("format", "Must be a string."));
            None
        }
    };
    let secret = match object.get("secret") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(text)) => match Secret::parse(text) {
            Ok(secret) => Some(Some(secret)),
            Err(error) => {
                errors.push(FieldError::invalid("secret", secret_problem(error)));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::invalid("secret", "Must be a string."));
            None
        }
    };
    match (url, types, description, format, secret) {
        (Some(url), Some(types), Some(description), Some(format), Some(secret))
            if errors.is_empty() =>
        {
            Ok(Request {
                url,
                types,
                description,
                format,
                secret,
            })
        }
        _ => Err(errors),
    }
}

fn url_problem(error: UrlError) -> &'static str {
    match error {
        UrlError::NotHttp => "Must be an absolute http:// or https:// URL.",
        UrlError::UserInfo => "Must not hold a user name or password.",
        UrlError::NoHost => "Must name a host.",
        UrlError::AddressNotAllowed => {
            "Names an address webhooks may not reach (link-local, cloud metadata, or a range of \
             --webhook-deny)."
        }
    }
}

fn secret_problem(error: SecretError) -> String {
    format!("Must be whsec_ followed by base64 of 24 to 64 random bytes: it {error}.")
}

/// `*`, `job.failed`, `robot.*`: dot-separated words of lower-case letters, digits, `_` and `-`,
/// the last of which may be `*`.
fn valid_pattern(text: &str) -> bool {
    if text == "*" {
        return true;
    }
    let exact = text.strip_suffix(".*").unwrap_or(text);
    text.len() <= MAX_PATTERN
        && !exact.is_empty()
        && exact.split('.').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

/// Where a URL points, for the log: its host only (the rest may hold a token, as chat tools'
/// incoming webhook URLs do).
fn host_of(app: &App, url: &str) -> String {
    Target::parse(url, app.webhooks.policy())
        .map(|target| target.host().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

async fn create(app: &App, _: Managed, body: (Value, bytes::Bytes)) -> Result<Response, Problem> {
    let request = validate(app, &body.0).map_err(Problem::validation)?;
    let secret = match request.secret {
        Some(secret) => secret,
        None => Secret::generate()
            .map_err(|_| Problem::internal("no random bytes for a secret could be had"))?,
    };
    let secret = secret.to_text();
    let new = NewWebhook {
        url: request.url,
        types: request.types,
        description: request.description,
        format: request.format,
        secret: secret.clone(),
        created_at: Utc::now(),
    };
    let created = app
        .db
        .write(move |tx| tx.create_webhook(&new, MAX_WEBHOOKS))
        .await?;
    let webhook = match created {
        CreateWebhook::Created(webhook) => *webhook,
        CreateWebhook::TooMany => {
            return Err(Problem::validation(
                FieldError::invalid(
                    "",
                    format!("At most {MAX_WEBHOOKS} webhooks may exist: delete one first."),
                )
                .into(),
            ));
        }
    };
    app.webhooks.changed();
    log::info!(
        "webhook {} created: {} events of {:?} to {}",
        webhook.id,
        webhook.format.as_str(),
        webhook.types,
        crate::logging::Untrusted(&host_of(app, &webhook.url))
    );
    let location = format!("/api/webhooks/{}", webhook.id);
    let mut response = json(StatusCode::CREATED, &WebhookView::created(webhook, secret));
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn list(app: &App, _: Managed, query: &Query) -> Result<Response, Problem> {
    let limit = query::limit(query, app.config.limits.max_page)?;
    let filter = WebhookFilter {
        before: query::after_id(query)?,
        limit: i64::try_from(limit + 1).unwrap_or(i64::MAX),
    };
    let webhooks = app.db.read(move |conn| conn.webhooks(&filter)).await?;
    let (webhooks, next_after) = query::page(webhooks, limit, |w| w.id);
    Ok(json(
        StatusCode::OK,
        &Page {
            items: webhooks
                .into_iter()
                .map(WebhookView::from)
                .collect::<Vec<_>>(),
            next_after,
        },
    ))
}

fn no_webhook(id: i64) -> Problem {
    Problem::not_found(format!("no webhook {id}"))
}

async fn get(app: &App, _: Managed, id: i64) -> Result<Response, Problem> {
    let webhook = app
        .db
        .read(move |conn| conn.webhook(id))
        .await?
        .ok_or_else(|| no_webhook(id))?;
    Ok(json(StatusCode::OK, &WebhookView::from(webhook)))
}

async fn delete(app: &App, _: Managed, id: i64) -> Result<Response, Problem> {
    if !app.db.write(move |tx| tx.delete_webhook(id)).await? {
        return Err(no_webhook(id));
    }
    app.webhooks.changed();
    log::info!("webhook {id} deleted by request");
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

async fn enable(app: &App, _: Managed, id: i64) -> Result<Response, Problem> {
    // The missed events are read first, outside the writer; the write checks that nothing moved
    // meanwhile (another instance's request), and otherwise the read is made again.
    for _ in 0..3 {
        let missed = app
            .db
            .read(move |conn| conn.webhook_missed(id, MAX_SKIPPED_LISTED))
            .await?
            .ok_or_else(|| no_webhook(id))?;
        let skipped = missed.events.len();
        let now = Utc::now();
        let outcome = app
            .db
            .write(move |tx| tx.enable_webhook(&missed, now))
            .await?;
        match outcome {
            EnableWebhook::Enabled(webhook) => {
                for _ in 0..skipped {
                    crate::http::metrics::bump(&app.metrics.webhook_skipped);
                }
                app.webhooks.changed();
                log::info!(
                    "webhook {id} enabled by request; {skipped} missed events listed as skipped"
                );
                return Ok(json(StatusCode::OK, &WebhookView::from(*webhook)));
            }
            EnableWebhook::AlreadyActive(webhook) => {
                return Ok(json(StatusCode::OK, &WebhookView::from(*webhook)));
            }
            EnableWebhook::NotFound => return Err(no_webhook(id)),
            EnableWebhook::Changed => {}
        }
    }
    Err(Problem::conflict(
        "webhook_changing",
        format!("webhook {id} kept changing while it was being enabled; try again"),
    ))
}

async fn deliveries(app: &App, _: Managed, id: i64, query: &Query) -> Result<Response, Problem> {
    let limit = query::limit(query, app.config.limits.max_page)?;
    let before = query::after_id(query)?;
    let found = app
        .db
        .read(move |conn| {
            if conn.webhook(id)?.is_none() {
                return Ok(None);
            }
            let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
            conn.webhook_deliveries(id, before, fetch).map(Some)
        })
        .await?
        .ok_or_else(|| no_webhook(id))?;
    let (attempts, next_after) = query::page(found, limit, |d| d.id);
    Ok(json(
        StatusCode::OK,
        &Page {
            items: attempts
                .into_iter()
                .map(DeliveryView::from)
                .collect::<Vec<_>>(),
            next_after,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_patterns() {
        for good in [
            "*",
            "job.failed",
            "robot.*",
            "job.*",
            "webhook.disabled",
            "x-1.y_2",
        ] {
            assert!(valid_pattern(good), "{good}");
        }
        for bad in [
            "",
            "job.",
            ".job",
            "Job.failed",
            "job.*.x",
            "job*",
            "*.failed",
            "job failed",
        ] {
            assert!(!valid_pattern(bad), "{bad}");
        }
        assert!(!valid_pattern(&"a".repeat(101)));
    }
}
