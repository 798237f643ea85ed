//! `GET /api/events`: the events, oldest first, as pages of JSON, or, asked with
//! `Accept: text/event-stream`, as a live Server-Sent Events stream (the hub in
//! `tasks/event_hub.rs`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use rpa_protocol::RobotAddress;
use rpa_store::TypePattern;
use rpa_validation::{FieldError, FieldErrors};
use warp::Filter;
use warp::Reply as _;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::query::{self, Query};
use super::{answer, json, with_app};
use crate::app::App;
use crate::http::listener::CloseConnection;
use crate::http::problem::Problem;
use crate::http::views::{CloudEvent, Page};
use crate::tasks::event_hub::{self, Selection, Subscription};

/// A comment this often at the latest keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";
/// Patterns in `type`, subjects in `subject`, at most (as a webhook's types).
const MAX_FILTERS: usize = 50;
const MAX_FILTER_LEN: usize = 200;

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "events")
        .and(warp::get())
        .and(with_app(app))
        .and(warp::query::<Query>())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<CloseConnection>())
        .then(
            |app: Arc<App>, query: Query, headers: HeaderMap, close| async move {
                answer(events(app, &query, &headers, close).await)
            },
        )
        .boxed()
}

async fn events(
    app: Arc<App>,
    query: &Query,
    headers: &HeaderMap,
    close: Option<CloseConnection>,
) -> Result<Response, Problem> {
    let selection = selection(query)?;
    let limit = query::limit(query, app.config.limits.max_page)?;
    let after = cursor(query.get("after").map(String::as_str), "after")?;
    // Checked on a page too, where it is not used: a malformed header is an error wherever it
    // is sent, as the OpenAPI document states.
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| {
            value.to_str().map_err(|_| {
                Problem::bad_request("bad_cursor", "Last-Event-ID must be an event id")
            })
        })
        .transpose()?;
    let last_event_id = cursor(last_event_id, "Last-Event-ID")?;
    if wants_stream(headers) {
        // A reconnecting EventSource sends the last id it received: that one wins.
        let after = last_event_id.or(after);
        if let Some(after) = after {
            let floor = app.db.read(|conn| conn.event_floor()).await?;
            if after < floor {
                return Err(trimmed(after, floor));
            }
        }
        let subscription = event_hub::subscribe(app, selection, after, close);
        return Ok(stream_response(subscription));
    }
    let filter = selection.filter(after.unwrap_or(0), limit);
    let read = app
        .db
        .read(move |conn| {
            let floor = conn.event_floor()?;
            match after {
                Some(after) if after < floor => Ok(Err(trimmed(after, floor))),
                _ => Ok(Ok(conn.events(&filter)?)),
            }
        })
        .await??;
    let next_after = read.last().map(|event| event.id.to_string());
    Ok(json(
        StatusCode::OK,
        &Page {
            items: read.into_iter().map(CloudEvent::from).collect::<Vec<_>>(),
            next_after,
        },
    ))
}

fn trimmed(after: i64, floor: i64) -> Problem {
    Problem::new(
        StatusCode::GONE,
        "events_trimmed",
        "Gone",
        format!(
            "the events after {after} are no longer kept (--event-retention): the oldest kept follow {floor}; read again without after to start there"
        ),
    )
}

/// An event id given as where to start: a whole number, 0 or more; empty is none.
fn cursor(text: Option<&str>, name: &str) -> Result<Option<i64>, Problem> {
    let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    match text.parse::<i64>() {
        Ok(id) if id >= 0 => Ok(Some(id)),
        _ => Err(Problem::bad_request(
            "bad_cursor",
            format!("{name} must be the id of the last event seen"),
        )),
    }
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// `type` and `subject`: comma-separated lists; a type ending in `*` is a prefix.
fn selection(query: &Query) -> Result<Selection, Problem> {
    let mut errors = FieldErrors::new();
    let mut types = Vec::new();
    for pattern in list(query, "type", &mut errors) {
        let (name, star) = match pattern.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (pattern, false),
        };
        if name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && (star || !name.is_empty())
        {
            types.push(TypePattern::parse(pattern));
        } else {
            errors.push(FieldError::invalid(
                "type",
                format!(
                    "{pattern:?} is not an event type (letters, digits, '.', '_' and '-', or a prefix ending in '*' such as job.*)"
                ),
            ));
        }
    }
    let mut subjects = Vec::new();
    for subject in list(query, "subject", &mut errors) {
        match normalise_subject(subject) {
            Some(subject) => subjects.push(subject),
            None => errors.push(FieldError::invalid(
                "subject",
                format!(
                    "{subject:?} is not a subject (jobs/42, robots/001AFFDB45C2, schedules/3, ...)"
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(Selection { types, subjects })
    } else {
        Err(Problem::validation(errors))
    }
}

/// The non-empty items of a comma-separated parameter, checked for number and length.
fn list<'a>(query: &'a Query, name: &str, errors: &mut FieldErrors) -> Vec<&'a str> {
    let items: Vec<&str> = query
        .get(name)
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if items.len() > MAX_FILTERS {
        errors.push(FieldError::invalid(
            name,
            format!("at most {MAX_FILTERS} items"),
        ));
        return Vec::new();
    }
    items
        .into_iter()
        .filter(|item| {
            let fits = item.len() <= MAX_FILTER_LEN;
            if !fits {
                errors.push(FieldError::invalid(
                    name,
                    format!("an item has at most {MAX_FILTER_LEN} characters"),
                ));
            }
            fits
        })
        .collect()
}

/// A subject as events carry it: `jobs/042` is `jobs/42`, a robot's address is normalised as
/// everywhere else. `None` when it cannot be one.
fn normalise_subject(subject: &str) -> Option<String> {
    let (kind, id) = subject.split_once('/')?;
    if kind.is_empty() || id.is_empty() || subject.chars().any(char::is_control) {
        return None;
    }
    match kind {
        "jobs" | "schedules" | "webhooks" => {
            let id: i64 = id.parse().ok().filter(|id| *id >= 0)?;
            Some(format!("{kind}/{id}"))
        }
        "robots" => Some(format!("robots/{}", RobotAddress::new(id).as_str())),
        _ => Some(subject.to_owned()),
    }
}

fn stream_response(subscription: Subscription) -> Response {
    let body = SseBody {
        subscription,
        interval: KEEP_ALIVE,
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
    };
    let mut response = warp::reply::stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer answers (nginx) pass this one through as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The body of a stream: the subscriber's frames as they come, and a keep-alive comment after
/// [`KEEP_ALIVE`] without one. Ends when the subscription does.
struct SseBody {
    subscription: Subscription,
    interval: Duration,
    keep_alive: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for SseBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let frame = match this.subscription.poll_frame(cx) {
            Poll::Ready(Some(frame)) => frame,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => match this.keep_alive.as_mut().poll(cx) {
                Poll::Ready(()) => Bytes::from_static(KEEP_ALIVE_COMMENT),
                Poll::Pending => return Poll::Pending,
            },
        };
        let next = tokio::time::Instant::now() + this.interval;
        this.keep_alive.as_mut().reset(next);
        Poll::Ready(Some(Ok(frame)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>()
    }

    #[test]
    fn types_and_subjects_are_lists_checked_and_normalised() {
        let chosen = selection(&query(&[
            ("type", "job.failed, robot.*,,"),
            ("subject", "jobs/042,robots/00:1a:ff:db:45:c2,webhooks/2"),
        ]))
        .unwrap();
        assert_eq!(
            chosen.types,
            vec![
                TypePattern::Exact("job.failed".into()),
                TypePattern::Prefix("robot.".into())
            ]
        );
        assert_eq!(
            chosen.subjects,
            vec!["jobs/42", "robots/001AFFDB45C2", "webhooks/2"]
        );
        assert_eq!(selection(&query(&[])).unwrap(), Selection::default());

        for (name, value) in [
            ("type", "job.*.x"),
            ("type", "job failed"),
            ("type", "job*x"),
            ("subject", "jobs"),
            ("subject", "jobs/x"),
            ("subject", "/42"),
            ("subject", "schedules/-1"),
        ] {
            let problem = selection(&query(&[(name, value)])).unwrap_err();
            assert_eq!(problem.status, StatusCode::UNPROCESSABLE_ENTITY, "{value}");
            assert_eq!(problem.errors.as_slice()[0].field, name);
        }
        let many = vec!["job.sent"; MAX_FILTERS + 1].join(",");
        assert!(selection(&query(&[("type", &many)])).is_err());
        let long = format!("x/{}", "a".repeat(MAX_FILTER_LEN));
        assert!(selection(&query(&[("subject", &long)])).is_err());
        // "*" alone selects everything.
        assert_eq!(
            selection(&query(&[("type", "*")])).unwrap().types,
            vec![TypePattern::Prefix(String::new())]
        );
    }

    #[test]
    fn cursors_are_ids_and_the_stream_is_asked_for_by_accept() {
        assert_eq!(cursor(None, "after").unwrap(), None);
        assert_eq!(cursor(Some(" "), "after").unwrap(), None);
        assert_eq!(cursor(Some("17"), "after").unwrap(), Some(17));
        for bad in ["-1", "x", "1.5"] {
            assert_eq!(
                cursor(Some(bad), "after").unwrap_err().status,
                StatusCode::BAD_REQUEST
            );
        }
        let mut headers = HeaderMap::new();
        assert!(!wants_stream(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, Text/Event-Stream;q=0.9"),
        );
        assert!(wants_stream(&headers));
    }

    /// A body fed by hand: what `subscribe` hands the response.
    fn body(interval: Duration) -> (SseBody, event_hub::Outbox) {
        let (subscription, frames) = Subscription::detached();
        (
            SseBody {
                subscription,
                interval,
                keep_alive: Box::pin(tokio::time::sleep(interval)),
            },
            frames,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_gets_a_keep_alive_comment_every_interval() {
        use futures_util::StreamExt as _;
        let (mut body, frames) = body(KEEP_ALIVE);
        let started = tokio::time::Instant::now();
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b": keep-alive\n\n");
        assert_eq!(started.elapsed(), KEEP_ALIVE);

        // An event puts the next comment off.
        tokio::time::advance(Duration::from_secs(10)).await;
        frames.push(Bytes::from_static(b"id: 1\n\n")).await.unwrap();
        assert_eq!(&body.next().await.unwrap().unwrap()[..], b"id: 1\n\n");
        let sent = tokio::time::Instant::now();
        assert_eq!(
            &body.next().await.unwrap().unwrap()[..],
            b": keep-alive\n\n"
        );
        assert_eq!(sent.elapsed(), KEEP_ALIVE);

        // The subscription ends: so does the body, after what was buffered.
        frames.push(Bytes::from_static(b"id: 2\n\n")).await.unwrap();
        drop(frames);
        assert_eq!(&body.next().await.unwrap().unwrap()[..], b"id: 2\n\n");
        assert!(body.next().await.is_none());
    }
}
