//! Which methods each path takes, from the route table the OpenAPI document is checked against:
//! the `Allow` header of a 405, `HEAD` wherever `GET` reads, and which requests change state
//! (the browser rules of `auth.rs`).

use hyper::Method;

use crate::http::rest::ROUTES;

/// The routes the original service's clients call with `GET` to cancel or force a job:
/// `/jobs/cancel/{id}/`, `/api/jobs/force/{id}`, with or without the trailing slash. They change
/// state, so `HEAD` is not `GET` there, and browsers are held to the rules of state changes.
pub(crate) fn is_compat_change(path: &str) -> bool {
    let segments: Vec<&str> = segments(path).collect();
    let rest = match segments.as_slice() {
        ["jobs", rest @ ..] => rest,
        ["api", "jobs", rest @ ..] => rest,
        _ => return false,
    };
    matches!(rest, ["cancel" | "force", id] if !id.is_empty())
}

/// Whether a request may change state: every method but `GET`, `HEAD` and `OPTIONS`, and the
/// old `GET` cancel and force routes.
pub(crate) fn changes_state(method: &Method, path: &str) -> bool {
    match *method {
        Method::GET | Method::HEAD => is_compat_change(path),
        Method::OPTIONS => false,
        _ => true,
    }
}

/// The methods `path` takes, as an `Allow` header lists them: those of every route whose
/// template matches, with `HEAD` beside `GET` (not on the old cancel and force routes).
pub(crate) fn allowed(path: &str) -> Vec<Method> {
    let mut methods: Vec<Method> = Vec::new();
    if is_page(path) {
        methods.push(Method::GET);
    }
    for (method, template) in ROUTES {
        if matches(template, path)
            && let Ok(method) = Method::from_bytes(method.as_bytes())
        {
            methods.push(method);
        }
    }
    if methods.contains(&Method::GET) && !is_compat_change(path) {
        methods.push(Method::HEAD);
    }
    let order = |m: &Method| {
        [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ]
        .iter()
        .position(|known| known == m)
        .unwrap_or(usize::MAX)
    };
    methods.sort_by_key(order);
    methods.dedup();
    methods
}

/// `GET, HEAD, POST` for a 405's `Allow` header.
pub(crate) fn allow_header(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The operator's page (`http/ui.rs`): `/`, `/ui` and what is below `/ui/`.
fn is_page(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    trimmed.split('/')
}

/// Whether `path` is an instance of `template` (`{name}` matches one non-empty segment); a
/// trailing slash counts on neither side, as the routes take both spellings.
fn matches(template: &str, path: &str) -> bool {
    let mut wanted = segments(template);
    let mut given = segments(path);
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) => {
                let param = w.starts_with('{') && w.ends_with('}');
                if (param && g.is_empty()) || (!param && w != g) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(path: &str) -> String {
        allow_header(&allowed(path))
    }

    #[test]
    fn allow_lists_every_method_of_the_path_with_head_beside_get() {
        assert_eq!(shown("/api/jobs"), "GET, HEAD, POST");
        assert_eq!(shown("/api/jobs/7"), "GET, HEAD");
        assert_eq!(shown("/api/jobs/7/cancel"), "POST");
        assert_eq!(shown("/api/schedules/3"), "GET, HEAD, DELETE");
        assert_eq!(shown("/pkg"), "POST");
        assert_eq!(shown("/healthz"), "GET, HEAD");
        assert_eq!(shown("/ui/app.js"), "GET, HEAD");
        assert_eq!(shown("/nothing"), "");
    }

    #[test]
    fn the_old_get_routes_that_change_state_take_no_head() {
        for path in [
            "/jobs/cancel/5/",
            "/jobs/cancel/5",
            "/jobs/force/5/",
            "/api/jobs/cancel/5",
            "/api/jobs/force/5/",
        ] {
            assert!(is_compat_change(path), "{path}");
            assert_eq!(shown(path), "GET", "{path}");
            assert!(changes_state(&Method::GET, path));
        }
        assert!(!is_compat_change("/api/jobs/5/cancel"));
        assert!(!is_compat_change("/jobs/cancel/"));
        assert!(!changes_state(&Method::GET, "/api/jobs"));
        assert!(changes_state(&Method::POST, "/api/jobs"));
        assert!(changes_state(&Method::DELETE, "/api/schedules/1"));
        assert!(!changes_state(&Method::OPTIONS, "/api/jobs"));
    }
}
