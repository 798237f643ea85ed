//! `GET /api/openapi.json`: the OpenAPI document of the REST API, written by hand in
//! `crates/server/openapi.json` and checked against [`ROUTES`] by the tests below (and against
//! the running server by `bin/socket-server/tests/openapi.rs`).

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::app::App;

/// The document, as served.
const DOCUMENT: &str = include_str!("../../../openapi.json");

/// Every route the REST API serves: (method, path template), written as in the document.
/// `/jobs/cancel/{id}/` and `/jobs/force/{id}/` also answer without their trailing slash, and
/// `/api/jobs/cancel/{id}` and `/api/jobs/force/{id}` with one.
// Also the source of each path's methods (`http/methods.rs`: `Allow`, `HEAD`).
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("POST", "/api/jobs"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/{id}"),
    ("POST", "/api/jobs/{id}/cancel"),
    ("POST", "/api/jobs/{id}/force"),
    ("POST", "/api/jobs/{id}/retry"),
    ("GET", "/api/robots"),
    ("GET", "/api/robots/{address}"),
    ("PUT", "/api/robots/{address}"),
    ("GET", "/api/robots/{address}/messages"),
    ("GET", "/api/robots/{address}/jobs"),
    ("PUT", "/api/robots/{address}/pools"),
    ("GET", "/api/pools"),
    ("GET", "/api/pools/{name}"),
    ("POST", "/api/robots/{address}/credentials"),
    ("GET", "/api/robots/{address}/credentials"),
    ("GET", "/api/robots/{address}/credentials/{id}"),
    ("DELETE", "/api/robots/{address}/credentials/{id}"),
    ("GET", "/api/schedules"),
    ("GET", "/api/schedules/{id}"),
    ("DELETE", "/api/schedules/{id}"),
    ("POST", "/api/schedules/{id}/pause"),
    ("POST", "/api/schedules/{id}/resume"),
    ("GET", "/api/events"),
    ("POST", "/api/webhooks"),
    ("GET", "/api/webhooks"),
    ("GET", "/api/webhooks/{id}"),
    ("DELETE", "/api/webhooks/{id}"),
    ("POST", "/api/webhooks/{id}/enable"),
    ("GET", "/api/webhooks/{id}/deliveries"),
    ("GET", "/jobs/cancel/{id}/"),
    ("GET", "/api/jobs/cancel/{id}"),
    ("GET", "/jobs/force/{id}/"),
    ("GET", "/api/jobs/force/{id}"),
    ("POST", "/robots/package"),
    ("POST", "/api/robots/package"),
    ("POST", "/pkg"),
];

pub(super) fn routes(_app: Arc<App>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "openapi.json")
        .and(warp::get())
        .map(document)
        .boxed()
}

fn document() -> Response {
    let mut response = Response::new(DOCUMENT.into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn parsed() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON")
    }

    /// Follows a local `$ref` (`#/components/...`) to what it names.
    fn resolve<'a>(doc: &'a Value, mut node: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else {
                return node;
            };
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local references: {reference}"));
            node = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling reference {reference}"));
        }
        panic!("reference loop");
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let paths = doc["paths"].as_object().expect("paths");
        let mut found = Vec::new();
        for (path, item) in paths {
            for (key, operation) in item.as_object().expect("a path item") {
                if METHODS.contains(&key.as_str()) {
                    found.push((key.to_ascii_uppercase(), path.clone(), operation));
                }
            }
        }
        found
    }

    #[test]
    fn the_document_is_json_and_openapi_3() {
        let doc = parsed();
        let version = doc["openapi"].as_str().expect("openapi version");
        assert!(version.starts_with("3."), "{version}");
        assert!(doc["info"]["title"].is_string());
        let response = document();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
    }

    #[test]
    fn routes_and_document_list_the_same_operations() {
        let doc = parsed();
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        assert_eq!(served.len(), ROUTES.len(), "ROUTES has duplicates");
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "served but not documented: {undocumented:?}; documented but not served: {unserved:?}"
        );
    }

    #[test]
    fn every_operation_has_a_success_and_a_problem_response() {
        let doc = parsed();
        for (method, path, operation) in operations(&doc) {
            let responses = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path}: no responses"));
            assert!(
                responses.keys().any(|code| code.starts_with('2')),
                "{method} {path}: no 2xx response"
            );
            let problems = responses
                .iter()
                .filter(|(code, _)| !code.starts_with('2'))
                .filter(|(_, response)| {
                    resolve(&doc, response)["content"]
                        .get("application/problem+json")
                        .is_some_and(|media| {
                            resolve(&doc, &media["schema"])
                                == &doc["components"]["schemas"]["Problem"]
                        })
                })
                .count();
            assert!(
                problems > 0,
                "{method} {path}: no application/problem+json error response"
            );
            // Every error is a problem document.
            for (code, response) in responses {
                if code.starts_with('2') {
                    continue;
                }
                let content = &resolve(&doc, response)["content"];
                let kinds: Vec<&String> = content
                    .as_object()
                    .map_or(Vec::new(), |c| c.keys().collect());
                assert_eq!(
                    kinds,
                    ["application/problem+json"],
                    "{method} {path} {code}: errors are problem documents"
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves_and_path_parameters_are_declared() {
        let doc = parsed();
        fn walk(doc: &Value, node: &Value) {
            match node {
                Value::Object(map) => {
                    if map.contains_key("$ref") {
                        resolve(doc, node);
                    }
                    map.values().for_each(|value| walk(doc, value));
                }
                Value::Array(items) => items.iter().for_each(|value| walk(doc, value)),
                _ => {}
            }
        }
        walk(&doc, &doc);
        for (method, path, operation) in operations(&doc) {
            let declared: BTreeSet<String> = operation["parameters"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|parameter| resolve(&doc, parameter))
                .filter(|parameter| parameter["in"] == "path")
                .filter_map(|parameter| parameter["name"].as_str().map(str::to_owned))
                .collect();
            let templated: BTreeSet<String> = path
                .split('/')
                .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            assert_eq!(declared, templated, "{method} {path}: path parameters");
        }
    }
}
