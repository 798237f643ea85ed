//! RFC 9457 problem documents: every error the HTTP API answers.

use std::fmt;

use rpa_validation::FieldErrors;
use serde::ser::SerializeSeq as _;
use serde::{Serialize, Serializer};
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

/// An error answer of the API. `code` is stable and snake_case; `type` is derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) title: &'static str,
    pub(crate) detail: String,
    /// The fields that failed validation; none for other problems.
    pub(crate) errors: FieldErrors,
    /// The original service's `Alert` text, kept in the answers of the routes old clients call.
    pub(crate) alert: Option<&'static str>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) www_authenticate: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    /// Always present (empty unless fields failed validation), so clients need not test for it.
    errors: Fields<'a>,
    #[serde(rename = "Alert", skip_serializing_if = "Option::is_none")]
    alert: Option<&'a str>,
}

/// The fields that failed validation as the API shows them: `[{"field": ..., "problem": ...}]`.
struct Fields<'a>(&'a [rpa_validation::FieldError]);

#[derive(Serialize)]
struct Field<'a> {
    field: &'a str,
    problem: &'a str,
}

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for error in self.0 {
            seq.serialize_element(&Field {
                field: &error.field,
                problem: &error.message,
            })?;
        }
        seq.end()
    }
}

impl Problem {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            code,
            title,
            detail: detail.into(),
            errors: FieldErrors::new(),
            alert: None,
            retry_after: None,
            www_authenticate: false,
        }
    }

    pub(crate) fn bad_request(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, "Bad request", detail)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    pub(crate) fn conflict(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, code, "Conflict", detail)
    }

    pub(crate) fn validation(errors: FieldErrors) -> Problem {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields failed validation", many.len()),
        };
        Problem {
            errors,
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "The request failed validation",
                detail,
            )
        }
    }

    pub(crate) fn unavailable(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            retry_after: Some(1),
            ..Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                "Service unavailable",
                detail,
            )
        }
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
            detail,
        )
    }

    pub(crate) fn with_alert(mut self, alert: &'static str) -> Problem {
        self.alert = Some(alert);
        self
    }
}

/// A problem is an answer: problem+json with its status and headers.
impl warp::Reply for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: format!("/problems/{}", self.code.replace('_', "-")),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: Fields(self.errors.as_slice()),
            alert: self.alert,
        };
        let text = serde_json::to_string(&body).unwrap_or_else(|_| {
            format!(r#"{{"status":{},"title":"error"}}"#, self.status.as_u16())
        });
        let mut response = Response::new(text.into());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rpa-orchestrator\""),
            );
        }
        response
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl From<rpa_store::StoreError> for Problem {
    fn from(error: rpa_store::StoreError) -> Problem {
        use rpa_store::StoreError;
        match &error {
            StoreError::Busy => Problem::unavailable(
                "database_busy",
                "the database is busy; nothing was changed, retry shortly",
            ),
            StoreError::Full => Problem {
                status: StatusCode::INSUFFICIENT_STORAGE,
                ..Problem::unavailable(
                    "storage_full",
                    "the database's disk is full; nothing was changed",
                )
            },
            StoreError::ReadOnly(_) => Problem::unavailable(
                "storage_unwritable",
                "the database cannot be written; nothing was changed",
            ),
            StoreError::Overloaded | StoreError::Pool(_) => Problem::unavailable(
                "overloaded",
                "the server is overloaded; nothing was changed, retry shortly",
            ),
            // PostgreSQL out of reach (restarting, failing over): the writer and the pool connect
            // again by themselves.
            StoreError::Unavailable(_) => Problem::unavailable(
                "database_unavailable",
                "the database server cannot be reached; retry shortly (a trigger retried with \
                 its Idempotency-Key is not created twice)",
            ),
            StoreError::WriterStopped => {
                Problem::unavailable("shutting_down", "the server is shutting down")
            }
            _ => {
                log::error!("database error: {error}");
                Problem::internal("a database error occurred; nothing was changed")
            }
        }
    }
}
