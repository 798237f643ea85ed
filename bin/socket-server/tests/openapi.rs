#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The OpenAPI document (`crates/server/openapi.json`) against the running server: it is
//! served, every operation it lists is routed and answers with a status (and a body shape) the
//! document lists, every request-body example is accepted, and every route of the server's
//! `ROUTES` table is routed.

mod common;

use common::{Server, Ws, http_raw};
use rpa_testkit::Trigger;
use serde_json::{Value, json};

const ROBOT: &str = "001AFFDB45C2";
const DOCUMENT: &str = include_str!("../../../crates/server/openapi.json");
/// The module that holds the server's `ROUTES` table (it is crate-private, so it is read here
/// as text).
const ROUTES_SOURCE: &str = include_str!("../../../crates/server/src/http/rest/openapi.rs");
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).unwrap()
}

/// Follows local `$ref`s.
fn resolve<'a>(doc: &'a Value, mut node: &'a Value) -> &'a Value {
    while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        node = doc
            .pointer(reference.strip_prefix('#').unwrap())
            .unwrap_or_else(|| panic!("dangling reference {reference}"));
    }
    node
}

struct Operation<'a> {
    method: String,
    path: String,
    spec: &'a Value,
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (key, spec) in item.as_object().unwrap() {
            if METHODS.contains(&key.as_str()) {
                found.push(Operation {
                    method: key.to_ascii_uppercase(),
                    path: path.clone(),
                    spec,
                });
            }
        }
    }
    found
}

/// The request-body examples of an operation, by name.
fn body_examples(doc: &Value, operation: &Value) -> Vec<(String, Value)> {
    let Some(body) = operation.get("requestBody") else {
        return Vec::new();
    };
    let examples = &resolve(doc, body)["content"]["application/json"]["examples"];
    examples
        .as_object()
        .map(|examples| {
            examples
                .iter()
                .map(|(name, example)| (name.clone(), resolve(doc, example)["value"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `(METHOD, template)` pairs of `ROUTES`, read from its source.
fn routes_table() -> Vec<(String, String)> {
    let start = ROUTES_SOURCE
        .find("pub(crate) const ROUTES")
        .expect("ROUTES is declared");
    let table = &ROUTES_SOURCE[start..];
    let table = &table[..table.find("];").expect("ROUTES ends")];
    let routes: Vec<(String, String)> = table
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("(\""))
        .map(|line| {
            let parts: Vec<&str> = line.split('"').collect();
            (parts[1].to_owned(), parts[3].to_owned())
        })
        .collect();
    assert!(routes.len() > 10, "ROUTES could not be read: {routes:?}");
    routes
}

/// A one-shot trigger far in the future: the job stays `Pending`.
fn trigger(schedule: Value) -> Value {
    Trigger::new("package-x74s-eg", "cloudinary/studioPackages/pkg1-x74s.std")
        .robot("R", ROBOT)
        .schedule(schedule)
        .to_json()
}

async fn create(server: &Server, schedule: Value) -> i64 {
    let body = trigger(schedule).to_string();
    let (status, _, text) = http_raw(server.addr, "POST", "/api/jobs", Some(&body), &[]).await;
    assert_eq!(status, 201, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn new_job(server: &Server) -> i64 {
    create(server, json!({"at": "2099-07-15T09:00:00Z"})).await
}

async fn new_schedule(server: &Server) -> i64 {
    create(
        server,
        json!({"cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"}),
    )
    .await
}

/// A webhook that points at nothing listening (its deliveries fail quietly).
async fn new_webhook(server: &Server) -> i64 {
    let body = json!({"url": "http://127.0.0.1:9/hook", "types": ["job.failed"]}).to_string();
    let (status, _, text) = http_raw(server.addr, "POST", "/api/webhooks", Some(&body), &[]).await;
    assert_eq!(status, 201, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// A server with the robot registered (its socket must stay open for it to stay online).
async fn start() -> (Server, Ws) {
    let server = Server::start(&[]);
    let ws = server.robot("R", ROBOT).await;
    (server, ws)
}

/// The template with its parameters filled by things that exist: a fresh pending job, or a
/// fresh schedule, and the registered robot.
async fn fill(server: &Server, template: &str) -> String {
    let mut path = template
        .replace("{address}", ROBOT)
        .replace("{name}", "finance");
    if path.contains("{id}") {
        let id = if path.starts_with("/api/schedules/") {
            new_schedule(server).await
        } else if path.starts_with("/api/webhooks/") {
            new_webhook(server).await
        } else if path.contains("/credentials/") {
            new_credential(server).await
        } else if path.ends_with("/retry") {
            // Only a finished job can be run again.
            let id = new_job(server).await;
            let (status, body) = server
                .post(&format!("/api/jobs/{id}/cancel"), &json!({}))
                .await;
            assert_eq!(status, 200, "{body}");
            id
        } else {
            new_job(server).await
        };
        path = path.replace("{id}", &id.to_string());
    }
    path
}

async fn new_credential(server: &Server) -> i64 {
    let path = format!("/api/robots/{ROBOT}/credentials");
    let (status, created) = server.post(&path, &json!({"description": "test"})).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_i64().unwrap()
}

/// The router's own answers: no route for this path, or not for this method.
fn unrouted(status: u16, text: &str) -> bool {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    status == 405 || (status == 404 && body["detail"] == "no such route")
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    }
}

/// Whether `value` fits `schema` (the keywords the document uses: `$ref`, `allOf`, `oneOf`,
/// `type`, `enum`, `const`, `required`, `properties`, `additionalProperties: false`, `items`).
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    for part in schema["allOf"].as_array().map_or(&[][..], Vec::as_slice) {
        conforms(doc, part, value, at)?;
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        let fitting = choices
            .iter()
            .filter(|choice| conforms(doc, choice, value, at).is_ok())
            .count();
        if fitting != 1 {
            return Err(format!(
                "{at}: fits {fitting} of the oneOf choices: {value}"
            ));
        }
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !kinds.is_empty() && !kinds.iter().any(|kind| type_matches(kind, value)) {
        return Err(format!("{at}: {value} is not of type {kinds:?}"));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!("{at}: {value} is not {constant}"));
    }
    if let Value::Object(object) = value {
        for key in schema["required"].as_array().map_or(&[][..], Vec::as_slice) {
            let key = key.as_str().unwrap();
            if !object.contains_key(key) {
                return Err(format!("{at}: `{key}` is missing from {value}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(property) => conforms(doc, property, item, &format!("{at}.{key}"))?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: `{key}` is not documented"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            conforms(doc, item_schema, item, &format!("{at}[{index}]"))?;
        }
    }
    Ok(())
}

/// Checks an answer against the operation: a status it lists (other than `default`), a
/// content type it lists for that status, and a JSON body that fits the schema.
fn check_answer(
    doc: &Value,
    operation: &Operation<'_>,
    status: u16,
    headers: &rpa_testkit::http::HeaderMap,
    text: &str,
) {
    let what = format!("{} {}", operation.method, operation.path);
    let listed = operation.spec["responses"].as_object().unwrap();
    let Some(response) = listed.get(&status.to_string()) else {
        panic!(
            "{what} answered {status}, which the document does not list ({:?}): {text}",
            listed.keys().collect::<Vec<_>>()
        );
    };
    let response = resolve(doc, response);
    if response.get("content").is_none() {
        assert!(
            text.is_empty(),
            "{what} {status}: a body the document does not list: {text}"
        );
        return;
    }
    let kind = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let essence = |media: &str| media.split(';').next().unwrap_or("").trim().to_owned();
    let content = response["content"].as_object().unwrap();
    let Some((_, media)) = content
        .iter()
        .find(|(documented, _)| essence(documented) == essence(&kind))
    else {
        panic!(
            "{what} {status}: content type {kind:?} is not among {:?}",
            content.keys().collect::<Vec<_>>()
        );
    };
    if essence(&kind).ends_with("json") {
        let body: Value = serde_json::from_str(text)
            .unwrap_or_else(|error| panic!("{what} {status}: not JSON ({error}): {text}"));
        if let Err(problem) = conforms(doc, &media["schema"], &body, "body") {
            panic!("{what} {status}: the body does not fit the document: {problem}");
        }
    }
    if status == 201 {
        assert!(
            headers.contains_key("location"),
            "{what} 201 without Location"
        );
    }
}

#[tokio::test]
async fn the_document_is_served() {
    let server = Server::start(&[]);
    let (status, headers, text) =
        http_raw(server.addr, "GET", "/api/openapi.json", None, &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    let served: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(served, document());
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));
}

#[tokio::test]
async fn every_documented_operation_is_served_as_documented() {
    let doc = document();
    let (server, _ws) = start().await;
    for operation in operations(&doc) {
        let path = fill(&server, &operation.path).await;
        let body = body_examples(&doc, operation.spec)
            .into_iter()
            .next()
            .map(|(_, body)| body.to_string());
        let (status, headers, text) =
            http_raw(server.addr, &operation.method, &path, body.as_deref(), &[]).await;
        assert!(
            !unrouted(status, &text),
            "{} {path} is not routed: {status} {text}",
            operation.method
        );
        check_answer(&doc, &operation, status, &headers, &text);
        // Everything the paths name exists, so each answers its success (readiness may lag
        // the start by a scheduler tick).
        assert!(
            (200..300).contains(&status) || operation.path == "/readyz",
            "{} {path}: {status} {text}",
            operation.method
        );
    }
}

#[tokio::test]
async fn every_request_body_example_is_accepted() {
    let doc = document();
    let (server, _ws) = start().await;
    let mut tried = 0;
    for operation in operations(&doc) {
        let schema =
            &resolve(&doc, &operation.spec["requestBody"])["content"]["application/json"]["schema"];
        for (name, body) in body_examples(&doc, operation.spec) {
            if let Err(problem) = conforms(&doc, schema, &body, "example") {
                panic!(
                    "{} {}, example {name} does not fit its schema: {problem}",
                    operation.method, operation.path
                );
            }
            let path = fill(&server, &operation.path).await;
            let body = body.to_string();
            let (status, headers, text) =
                http_raw(server.addr, &operation.method, &path, Some(&body), &[]).await;
            assert!(
                (200..300).contains(&status),
                "{} {path}, example {name}: {status} {text}",
                operation.method
            );
            check_answer(&doc, &operation, status, &headers, &text);
            tried += 1;
        }
    }
    assert!(tried >= 6, "only {tried} examples");
}

#[tokio::test]
async fn every_route_of_the_routes_table_is_served() {
    let (server, _ws) = start().await;
    // The detector itself: an unknown path is the router's "no such route".
    let (status, _, text) = http_raw(server.addr, "GET", "/api/nothing-here", None, &[]).await;
    assert!(unrouted(status, &text), "{status} {text}");

    // The table as read here is the one the server's unit tests compare with the document.
    let doc = document();
    let mut table = routes_table();
    let mut documented: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .map(|operation| (operation.method, operation.path))
        .collect();
    table.sort();
    documented.sort();
    assert_eq!(table, documented);

    let body = trigger(json!({"date": "15-7", "time": "9:00:00"})).to_string();
    for (method, template) in routes_table() {
        let path = fill(&server, &template).await;
        // The old cancel and force routes take a trailing slash or none.
        let mut variants = vec![path.clone()];
        if template.starts_with("/jobs/") {
            variants.push(path.trim_end_matches('/').to_owned());
        } else if template.starts_with("/api/jobs/cancel/")
            || template.starts_with("/api/jobs/force/")
        {
            variants.push(format!("{path}/"));
        }
        for path in variants {
            let body = (method == "POST").then_some(body.as_str());
            let (status, _, text) = http_raw(server.addr, &method, &path, body, &[]).await;
            assert!(
                !unrouted(status, &text),
                "{method} {path} ({template}) is not routed: {status} {text}"
            );
        }
    }
}

/// A request body and its content type.
type Body<'a> = (&'a str, &'a str);

#[tokio::test]
async fn errors_are_the_documented_problems() {
    let doc = document();
    let (server, _ws) = start().await;
    let seed = trigger(json!({"date": "15-7", "time": "9:00:00"}));
    let mut impossible = seed.clone();
    impossible["Schedule"]["date"] = json!("31-2");
    let mut stranger = seed.clone();
    stranger["Robot"]["robot_address"] = json!("00-1A-FF-DB-45-C3");
    let mut missing = seed.clone();
    missing["Package"] = Value::Null;
    let bodies: [(&str, &str, u16); 5] = [
        ("{", "application/json", 400),
        ("{}", "text/plain", 415),
        (&impossible.to_string(), "application/json", 422),
        (&missing.to_string(), "application/json", 422),
        (&stranger.to_string(), "application/json", 404),
    ];
    let mut checked = 0;
    for operation in operations(&doc) {
        // A route that needs a body is asked about an unknown subject with a body it takes.
        let example = body_examples(&doc, operation.spec)
            .into_iter()
            .next()
            .map(|(_, body)| body.to_string());
        let mut requests: Vec<(String, Option<Body<'_>>, u16)> = Vec::new();
        if operation.spec.get("requestBody").is_some() {
            for (body, kind, status) in &bodies {
                // A trigger is no webhook, no credential, no robot record and no pool list: each
                // of the trigger bodies fails their validation.
                let strict = operation.path == "/api/webhooks"
                    || operation.path.ends_with("/credentials")
                    || operation.method == "PUT";
                let status = if strict && *status == 404 {
                    422
                } else {
                    *status
                };
                requests.push((operation.path.clone(), Some((body, kind)), status));
            }
        }
        // Enrolling or recording an unknown address records it: no 404 there (giving pools to
        // one is 404). A pool's name is never unknown: one nothing uses is 200 with zeros (and
        // `{name}` itself is not a name).
        let enrols = (operation.method == "POST" && operation.path.ends_with("/credentials"))
            || (operation.method == "PUT" && !operation.path.ends_with("/pools"));
        let pool = operation.path.starts_with("/api/pools/");
        if operation.path.contains('{') && !enrols && !pool {
            let path = operation
                .path
                .replace("{id}", "999999")
                .replace("{address}", "FFFFFFFFFFFF");
            let body = (operation.method == "PUT")
                .then_some(example.as_deref())
                .flatten()
                .map(|body| (body, "application/json"));
            requests.push((path, body, 404));
        }
        if operation.spec["parameters"]
            .as_array()
            .is_some_and(|parameters| {
                parameters
                    .iter()
                    .any(|parameter| resolve(&doc, parameter)["name"] == "limit")
            })
        {
            let path = operation
                .path
                .replace("{address}", ROBOT)
                .replace("{id}", "999999");
            requests.push((format!("{path}?limit=0"), None, 400));
        }
        for (path, body, expected) in requests {
            let headers: Vec<(&str, &str)> = body
                .map(|(_, kind)| vec![("content-type", kind)])
                .unwrap_or_default();
            let (status, answer_headers, text) = http_raw(
                server.addr,
                &operation.method,
                &path,
                body.map(|(body, _)| body),
                &headers,
            )
            .await;
            assert_eq!(status, expected, "{} {path}: {text}", operation.method);
            check_answer(&doc, &operation, status, &answer_headers, &text);
            let problem: Value = serde_json::from_str(&text).unwrap();
            // The routes kept for old clients add the original `Alert` to their problems.
            if operation.spec["deprecated"] == true {
                assert!(problem["Alert"].is_string(), "{path}: {text}");
            } else {
                assert!(problem.get("Alert").is_none(), "{path}: {text}");
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} error answers checked");
}

#[tokio::test]
async fn with_an_api_token_the_protected_operations_answer_the_documented_401() {
    let doc = document();
    let server = Server::start(&["--api-token", "s3cret-token"]);
    for operation in operations(&doc) {
        let path = operation
            .path
            .replace("{id}", "1")
            .replace("{address}", ROBOT);
        let (status, headers, text) =
            http_raw(server.addr, &operation.method, &path, None, &[]).await;
        let open = operation.spec["security"]
            .as_array()
            .is_some_and(Vec::is_empty);
        if open {
            assert_ne!(
                status, 401,
                "{} {path} is documented as open",
                operation.method
            );
        } else {
            assert_eq!(status, 401, "{} {path}: {text}", operation.method);
            assert!(headers.contains_key("www-authenticate"));
        }
        check_answer(&doc, &operation, status, &headers, &text);
    }
    let (status, _, text) = http_raw(
        server.addr,
        "GET",
        "/api/openapi.json",
        None,
        &[("authorization", "Bearer s3cret-token")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
}
