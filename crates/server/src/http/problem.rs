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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;
    use rpa_validation::FieldError;
    use serde_json::{Value, json};
    use warp::Reply as _;

    use super::*;

    async fn body(response: Response) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_problem_answers_problem_json_with_its_status() {
        let response = Problem::not_found("no job 7").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(
            body(response).await,
            json!({
                "type": "/problems/not-found",
                "title": "Not found",
                "status": 404,
                "detail": "no job 7",
                "code": "not_found",
                "errors": [],
            })
        );
    }

    #[tokio::test]
    async fn validation_lists_every_field_as_field_and_problem() {
        let errors = FieldErrors::from(vec![
            FieldError::invalid("Package.path", "Must not leave the packages folder."),
            FieldError::missing("Robot", "This object is required."),
        ]);
        let problem = Problem::validation(errors).with_alert("Package missing required data");
        assert!(problem.errors.any_missing());
        let response = problem.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = body(response).await;
        assert_eq!(body["detail"], "2 fields failed validation");
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(
            body["errors"],
            json!([
                {"field": "Package.path", "problem": "Must not leave the packages folder."},
                {"field": "Robot", "problem": "This object is required."},
            ])
        );
        assert_eq!(body["Alert"], "Package missing required data");

        let one = Problem::validation(FieldError::invalid("Schedule.date", "No.").into());
        assert_eq!(one.detail, "Schedule.date: No.");
    }

    #[test]
    fn unavailable_asks_to_retry_and_unauthorized_names_the_scheme() {
        let busy = Problem::unavailable("database_busy", "retry").into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let refused = Problem {
            www_authenticate: true,
            ..Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "x",
            )
        }
        .into_response();
        assert!(
            refused.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer ")
        );
    }

    #[test]
    fn store_errors_become_the_documented_codes() {
        use rpa_store::StoreError;
        for (error, status, code) in [
            (StoreError::Busy, 503, "database_busy"),
            (StoreError::Full, 507, "storage_full"),
            (StoreError::Overloaded, 503, "overloaded"),
            (StoreError::WriterStopped, 503, "shutting_down"),
            (
                StoreError::Corrupt(rpa_store::Corruption::Vanished { what: "job", id: 1 }),
                500,
                "internal_error",
            ),
        ] {
            let problem = Problem::from(error);
            assert_eq!((problem.status.as_u16(), problem.code), (status, code));
        }
    }
}
