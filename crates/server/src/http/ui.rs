//! The operator's page (dashboard.md): `GET /ui/` and its assets, compiled into the binary by
//! `build.rs` from `crates/server/ui/`. The page is static: it holds no data and reads
//! everything through the API with the operator's token, so serving it needs no token.
//! A plain `GET /` leads here; a WebSocket upgrade on `/` never reaches warp (the listener
//! takes it for a robot).

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::filters::path::FullPath;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use crate::http::problem::Problem;
use warp::Reply as _;

/// A file of the page, as `build.rs` lists it.
pub(crate) struct Asset {
    pub(crate) name: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

mod built {
    use super::Asset;
    include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));
}

/// Scripts and styles only from the server's own files (no inline code, so an injected
/// `<script>` or `style=` does nothing), requests only to the server, and no framing: nobody can
/// lay the page under their own and have an operator click Cancel or Delete unknowingly.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

const INDEX_PATH: &str = "/ui/";

/// The page's routes, tried after every API route.
pub(crate) fn routes() -> BoxedFilter<(Response,)> {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(
            |method: Method, path: FullPath, etag: Option<String>| async move {
                answer(&method, path.as_str(), etag.as_deref()).ok_or_else(warp::reject::not_found)
            },
        )
        .boxed()
}

/// The answer to a request, or `None` when it is not one for the page.
fn answer(method: &Method, path: &str, if_none_match: Option<&str>) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let response = match path {
        "/" => redirect(StatusCode::TEMPORARY_REDIRECT),
        "/ui" => redirect(StatusCode::PERMANENT_REDIRECT),
        INDEX_PATH => index(if_none_match),
        _ => asset(path.strip_prefix(INDEX_PATH)?),
    };
    Some(secured(response))
}

fn redirect(status: StatusCode) -> Response {
    let mut response = Response::new(Default::default());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(INDEX_PATH));
    response
}

fn index(if_none_match: Option<&str>) -> Response {
    let unchanged = if_none_match.is_some_and(|tags| {
        tags.split(',')
            .any(|tag| tag.trim() == built::INDEX_ETAG || tag.trim() == "*")
    });
    let mut response = if unchanged {
        let mut response = Response::new(Default::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        file(built::INDEX, "text/html; charset=utf-8")
    };
    let headers = response.headers_mut();
    // Always asked again, so a new server version brings its new assets at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, HeaderValue::from_static(built::INDEX_ETAG));
    response
}

fn asset(rest: &str) -> Response {
    let Some((digest, name)) = rest
        .strip_prefix("assets/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Problem::not_found("the operator's page is at /ui/").into_response();
    };
    if digest != built::DIGEST {
        // A page from before an upgrade asks for its own version's files: a reload fixes it.
        return Problem::not_found(
            "these assets belong to another version of the server: reload the page",
        )
        .into_response();
    }
    let Some(found) = built::ASSETS.iter().find(|asset| asset.name == name) else {
        return Problem::not_found("no such asset").into_response();
    };
    let mut response = file(found.body, found.content_type);
    // The address changes with the content (build.rs), so the content never does.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

fn file(body: &'static [u8], content_type: &'static str) -> Response {
    let mut response = Response::new(body.into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Headers of every answer under `/ui/`, the problem documents included.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response {
        answer(&Method::GET, path, None).unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    fn body(response: Response) -> Vec<u8> {
        use http_body_util::BodyExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    fn index_html() -> String {
        String::from_utf8(built::INDEX.to_vec()).unwrap()
    }

    #[test]
    fn the_root_leads_to_the_page() {
        let response = get("/");
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(header_of(&response, header::LOCATION), "/ui/");
        let head = answer(&Method::HEAD, "/", None).unwrap();
        assert_eq!(head.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(get("/ui").status(), StatusCode::PERMANENT_REDIRECT);
        // Other methods are not the page's: the API's routing answers them.
        assert!(answer(&Method::POST, "/", None).is_none());
        assert!(answer(&Method::DELETE, "/ui/", None).is_none());
        assert!(answer(&Method::GET, "/api/nothing", None).is_none());
    }

    #[test]
    fn the_page_is_never_cached_stale_and_carries_the_policy() {
        let response = get("/ui/");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
        assert_eq!(
            header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        let csp = header_of(&response, header::CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{csp} lacks {directive}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        let etag = header_of(&response, header::ETAG).to_owned();
        let again = answer(&Method::GET, "/ui/", Some(&format!("\"x\", {etag}"))).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(body(again).is_empty());
        let other = answer(&Method::GET, "/ui/", Some("\"x\"")).unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[test]
    fn the_page_has_no_inline_code_and_no_data() {
        let html = index_html();
        assert!(!html.contains("{{ASSETS}}"));
        assert!(
            !html.contains(" style="),
            "inline styles are refused by the policy"
        );
        let handler = html.split(|c: char| c.is_whitespace()).find(|word| {
            word.strip_prefix("on")
                .and_then(|rest| rest.split_once('='))
                .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_lowercase()))
        });
        assert_eq!(handler, None, "inline handlers are refused by the policy");
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no other origin"
        );
    }

    #[test]
    fn assets_are_immutable_under_their_digest() {
        let html = index_html();
        let prefix = format!("assets/{}/", built::DIGEST);
        assert!(html.contains(&format!("{prefix}app.js")));
        assert!(html.contains(&format!("{prefix}style.css")));
        for asset in built::ASSETS {
            let response = get(&format!("/ui/{prefix}{}", asset.name));
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            assert_eq!(
                header_of(&response, header::CACHE_CONTROL),
                "public, max-age=31536000, immutable"
            );
            assert_eq!(
                header_of(&response, header::CONTENT_TYPE),
                asset.content_type
            );
            assert_eq!(body(response), asset.body);
        }
        let js = built::ASSETS.iter().find(|a| a.name == "app.js").unwrap();
        assert_eq!(js.content_type, "text/javascript; charset=utf-8");
        let stale = get("/ui/assets/0000000000000000/app.js");
        assert_eq!(stale.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            header_of(&stale, header::CONTENT_TYPE),
            "application/problem+json"
        );
        for missing in [
            format!("/ui/{prefix}nothing.js"),
            format!("/ui/{prefix}"),
            "/ui/robots".to_owned(),
            "/ui/assets/".to_owned(),
        ] {
            assert_eq!(get(&missing).status(), StatusCode::NOT_FOUND, "{missing}");
        }
    }

    /// Every module a script imports is an asset: a typo would otherwise only show in a browser.
    #[test]
    fn every_import_resolves_to_an_asset() {
        let names: Vec<&str> = built::ASSETS.iter().map(|a| a.name).collect();
        let mut checked = 0;
        for asset in built::ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            let folder = asset.name.rsplit_once('/').map_or("", |(dir, _)| dir);
            for (at, _) in text.match_indices(" from '") {
                let rest = &text[at + 7..];
                let target = &rest[..rest.find('\'').unwrap()];
                let resolved = resolve(folder, target);
                assert!(
                    names.contains(&resolved.as_str()),
                    "{} imports {target}, which is not an asset ({resolved})",
                    asset.name
                );
                checked += 1;
            }
        }
        assert!(
            checked > 10,
            "only {checked} imports found: is the pattern still right?"
        );
    }

    fn resolve(folder: &str, target: &str) -> String {
        let mut parts: Vec<&str> = folder.split('/').filter(|p| !p.is_empty()).collect();
        for segment in target.split('/') {
            match segment {
                "." => {}
                ".." => {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        parts.join("/")
    }
}
