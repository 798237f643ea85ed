//! Access control, opt-in: bearer tokens for the API (`--api-token`) and for robots (the shared
//! `--robot-token`, and credentials of their own: `--robot-auth`, docs/SECURITY.md), and
//! browser origins (`--allowed-origins`). Several tokens may be valid at once, so a token can be
//! replaced without downtime. Tokens are compared in constant time (a credential is looked up by
//! the hash of what was presented) and never logged.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use warp::Reply as _;
use warp::reply::Response;

use crate::config::{Access, RobotAuth};
use crate::http::problem::Problem;
use crate::http::robot_token;

/// What a robot's upgrade request presented: `Authorization: Bearer`, or else `?token=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RobotToken {
    None,
    /// One of the shared `--robot-token`s.
    Shared,
    /// A token shaped like a credential's, as its hash: it is still to be looked up.
    Credential {
        hash: String,
    },
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was
/// right. (The length of the expected token is not a secret worth hiding.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= usize::from(x ^ y);
    }
    difference == 0
}

fn any_matches(tokens: &[String], presented: &str) -> bool {
    // Every token is compared, so which one matched does not show either.
    tokens.iter().fold(false, |found, token| {
        found | constant_time_eq(token.as_bytes(), presented.as_bytes())
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `token` query parameter (robots that cannot set headers use it).
fn query_token(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| crate::http::percent::decode(value, true))
}

/// Why a robot's upgrade request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RobotRefusal {
    /// A browser page of another site (403).
    Origin,
    /// A token that is not valid: unknown, revoked or malformed alike (401).
    InvalidToken,
    /// No token, and `--robot-token` is set (401).
    NeedsToken,
    /// No credential, in `--robot-auth enrolled` (401).
    NeedsCredential,
}

impl RobotRefusal {
    pub(crate) fn response(self) -> Response {
        match self {
            RobotRefusal::Origin => {
                forbidden("WebSocket connections from this origin are not allowed")
            }
            RobotRefusal::InvalidToken => unauthorized("the robot token is not valid"),
            RobotRefusal::NeedsToken => {
                unauthorized("robots need a token: Authorization: Bearer <token> or ?token=<token>")
            }
            RobotRefusal::NeedsCredential => unauthorized(
                "robots need a credential of their own: Authorization: Bearer rbt_... or \
                 ?token=rbt_...",
            ),
        }
    }
}

fn unauthorized(detail: &str) -> Response {
    Problem {
        www_authenticate: true,
        ..Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }
    .into_response()
}

/// Paths the API token protects: the API and the routes old clients call. Health and metrics
/// stay open for probes and scrapers.
fn protected(path: &str) -> bool {
    path == "/api"
        || path.starts_with("/api/")
        || path.starts_with("/jobs/")
        || path == "/robots/package"
        || path.starts_with("/robots/package/")
        || path == "/pkg"
        || path.starts_with("/pkg/")
}

impl Access {
    /// `None` when the request may go on; otherwise the answer to give instead.
    pub(crate) fn check_api(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<Response> {
        if let Some(refused) = self.check_browser(method, uri.path(), headers) {
            return Some(refused);
        }
        // Browsers ask before a cross-origin call and send no credentials when they do.
        if method == Method::OPTIONS {
            return None;
        }
        if self.api_tokens.is_empty() || !protected(uri.path()) {
            return None;
        }
        match bearer(headers) {
            Some(token) if any_matches(&self.api_tokens, token) => None,
            Some(_) => Some(unauthorized("the bearer token is not valid")),
            None => Some(unauthorized(
                "this route needs Authorization: Bearer <token>",
            )),
        }
    }

    /// Checks a robot's upgrade request, before the upgrade: its origin (a browser page of
    /// another site must not open a robot's connection; field robots send no `Origin`), and
    /// what token it presented. A token that is neither a shared one nor shaped like a
    /// credential is refused here; a credential is looked up next, then [`Access::admit_robot`]
    /// applies the mode.
    pub(crate) fn check_robot(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<RobotToken, RobotRefusal> {
        if let Some(origin) = headers.get(header::ORIGIN)
            && !same_origin(origin.as_bytes(), headers)
            && !self.origin_allowed(origin)
        {
            return Err(RobotRefusal::Origin);
        }
        let presented = bearer(headers)
            .map(str::to_owned)
            .or_else(|| query_token(uri));
        let Some(token) = presented else {
            return Ok(RobotToken::None);
        };
        if any_matches(&self.robot_tokens, &token) {
            return Ok(RobotToken::Shared);
        }
        if robot_token::is_shaped(&token) {
            return Ok(RobotToken::Credential {
                hash: robot_token::hash(&token),
            });
        }
        Err(RobotRefusal::InvalidToken)
    }

    /// Whether `--robot-auth` lets in a connection that presented `token` (a credential's was
    /// found by then).
    pub(crate) fn admit_robot(&self, token: &RobotToken) -> Result<(), RobotRefusal> {
        match (self.robot_auth, token) {
            (_, RobotToken::Credential { .. }) => Ok(()),
            (RobotAuth::Enrolled, _) => Err(RobotRefusal::NeedsCredential),
            (RobotAuth::Open, RobotToken::Shared) => Ok(()),
            (RobotAuth::Open, RobotToken::None) if self.robot_tokens.is_empty() => Ok(()),
            (RobotAuth::Open, RobotToken::None) => Err(RobotRefusal::NeedsToken),
        }
    }

    /// The browser rules (quality.md, "Browsers"). Same-origin requests always pass (the
    /// operator's page is served by this server). With `--allowed-origins`, an `Origin` outside
    /// the list is refused. Whatever the list, a request that changes state and that a browser
    /// sent from another site (`Sec-Fetch-Site: cross-site`, or an `Origin` or `Referer` naming
    /// another origin) is refused unless its origin is listed: no page elsewhere can make an
    /// operator's browser cancel or trigger jobs.
    fn check_browser(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
        let origin = headers.get(header::ORIGIN);
        if let Some(origin) = origin {
            if same_origin(origin.as_bytes(), headers) {
                return None;
            }
            if !self.allowed_origins.is_empty() && !self.origin_allowed(origin) {
                return Some(forbidden("requests from this origin are not allowed"));
            }
        }
        if !crate::http::methods::changes_state(method, path) {
            return None;
        }
        let listed = origin.is_some_and(|origin| self.origin_allowed(origin));
        if listed {
            return None;
        }
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        let foreign_origin = origin.is_some();
        let foreign_referer = origin.is_none()
            && headers
                .get(header::REFERER)
                .and_then(|referer| referer_origin(referer.as_bytes()))
                .is_some_and(|referer| !same_origin(referer.as_bytes(), headers));
        if cross_site || foreign_origin || foreign_referer {
            return Some(forbidden(
                "a browser page of another site cannot change state here; list its origin in \
                 --allowed-origins to allow it",
            ));
        }
        None
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        origin.to_str().is_ok_and(|origin| {
            self.allowed_origins.iter().any(|allowed| {
                allowed == "*" || allowed.eq_ignore_ascii_case(origin.trim_end_matches('/'))
            })
        })
    }

    /// CORS headers for a browser origin: every origin may read (`*`) when none are listed;
    /// listed origins may also change state. Answers preflights.
    pub(crate) fn cors(&self, method: &Method, headers: &HeaderMap, response: &mut Response) {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return;
        };
        let (allow, methods) = if self.origin_allowed(origin) {
            (origin.clone(), "GET, HEAD, POST, PUT, DELETE, OPTIONS")
        } else if self.allowed_origins.is_empty() {
            (HeaderValue::from_static("*"), "GET, HEAD, OPTIONS")
        } else {
            return;
        };
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        out.insert(header::VARY, HeaderValue::from_static("Origin"));
        out.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Location, Retry-After"),
        );
        if method == Method::OPTIONS {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Authorization, Content-Type, Idempotency-Key"),
            );
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
    }
}

fn forbidden(detail: &str) -> Response {
    Problem::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        "Forbidden",
        detail,
    )
    .into_response()
}

/// `scheme://host[:port]` of a `Referer` URL.
fn referer_origin(referer: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(referer).ok()?;
    let (scheme, rest) = text.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{authority}"))
}

/// Whether a browser origin (`scheme://host[:port]`) is the origin the request was sent to:
/// its host and port are those of `Host` (or of `X-Forwarded-Host`, which a proxy in front sets;
/// a browser page cannot set it on a cross-site request, as no preflight here allows it). An
/// origin without a port stands for its scheme's default, and so does a `Host` without one.
fn same_origin(origin: &[u8], headers: &HeaderMap) -> bool {
    let Some((scheme, host, port)) = std::str::from_utf8(origin).ok().and_then(split_origin) else {
        return false;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return false,
    };
    let port = port.unwrap_or(default);
    [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .flat_map(|name| headers.get_all(name))
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|value| split_authority(value.trim()))
        .any(|(their_host, their_port)| {
            their_host.eq_ignore_ascii_case(host)
                && their_port.map_or(port == 80 || port == 443, |p| p == port)
        })
}

fn split_origin(origin: &str) -> Option<(&str, &str, Option<u16>)> {
    let (scheme, authority) = origin.trim_end_matches('/').split_once("://")?;
    let (host, port) = split_authority(authority)?;
    Some((scheme, host, port))
}

/// `host[:port]`, an IPv6 literal in brackets; `None` when the port is not a number.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '@']) {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        (host, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse().ok()?),
        None => None,
    };
    Some((host, port))
}

/// A preflight answer: the CORS headers are added by [`Access::cors`].
pub(crate) fn preflight() -> Response {
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn access() -> Access {
        Access {
            api_tokens: vec!["old-secret".into(), "new-secret".into()],
            robot_tokens: vec!["robots".into()],
            allowed_origins: vec!["https://studio.example".into()],
            robot_auth: RobotAuth::Open,
        }
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn the_api_needs_one_of_the_tokens_and_health_stays_open() {
        let access = access();
        let get = Method::GET;
        let jobs: Uri = "/api/jobs".parse().unwrap();
        assert!(access.check_api(&get, &jobs, &headers(&[])).is_some());
        assert!(
            access
                .check_api(&get, &jobs, &headers(&[("authorization", "Bearer wrong")]))
                .is_some()
        );
        for token in ["Bearer old-secret", "bearer new-secret"] {
            let h = headers(&[("authorization", token)]);
            assert!(access.check_api(&get, &jobs, &h).is_none(), "{token}");
        }
        for open in ["/healthz", "/readyz", "/metrics"] {
            assert!(
                access
                    .check_api(&get, &open.parse().unwrap(), &headers(&[]))
                    .is_none()
            );
        }
        for closed in ["/jobs/cancel/1/", "/pkg", "/robots/package", "/api/robots"] {
            assert!(
                access
                    .check_api(&get, &closed.parse().unwrap(), &headers(&[]))
                    .is_some(),
                "{closed}"
            );
        }
        let refused = access.check_api(&get, &jobs, &headers(&[])).unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(
            refused.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }

    /// The token check and the mode together, for requests without a credential.
    fn robot(access: &Access, uri: &str, headers: &HeaderMap) -> Result<RobotToken, StatusCode> {
        let token = access
            .check_robot(&uri.parse().unwrap(), headers)
            .map_err(|r| r.response().status())?;
        access
            .admit_robot(&token)
            .map_err(|r| r.response().status())?;
        Ok(token)
    }

    #[test]
    fn robots_may_bring_their_token_in_the_query() {
        let access = access();
        let none = headers(&[]);
        assert_eq!(robot(&access, "/", &none), Err(StatusCode::UNAUTHORIZED));
        assert_eq!(
            robot(&access, "/?token=robots", &none),
            Ok(RobotToken::Shared)
        );
        assert_eq!(
            robot(&access, "/ws?x=1&token=rob%6fts", &none),
            Ok(RobotToken::Shared)
        );
        assert_eq!(
            robot(&access, "/?token=nope", &none),
            Err(StatusCode::UNAUTHORIZED)
        );
        let header = headers(&[("authorization", "Bearer robots")]);
        assert_eq!(robot(&access, "/", &header), Ok(RobotToken::Shared));
        // The header wins over the query.
        assert_eq!(
            robot(&access, "/?token=nope", &header),
            Ok(RobotToken::Shared)
        );
    }

    #[test]
    fn credentials_are_looked_up_by_their_hash_and_the_mode_decides_the_rest() {
        let credential = format!("rbt_{}", "x".repeat(43));
        let uri = format!("/api/robots/connect?token={credential}");
        let none = headers(&[]);
        let expected = RobotToken::Credential {
            hash: robot_token::hash(&credential),
        };
        let open = Access::default();
        assert_eq!(robot(&open, &uri, &none), Ok(expected.clone()));
        assert_eq!(robot(&open, "/", &none), Ok(RobotToken::None));
        // Without --robot-token, a token that is no credential is still refused.
        assert_eq!(
            robot(&open, "/?token=whatever", &none),
            Err(StatusCode::UNAUTHORIZED)
        );
        let enrolled = Access {
            robot_auth: RobotAuth::Enrolled,
            ..access()
        };
        assert_eq!(robot(&enrolled, &uri, &none), Ok(expected));
        assert_eq!(robot(&enrolled, "/", &none), Err(StatusCode::UNAUTHORIZED));
        assert_eq!(
            robot(&enrolled, "/?token=robots", &none),
            Err(StatusCode::UNAUTHORIZED),
            "the shared token registers no one"
        );
    }

    #[test]
    fn foreign_browser_origins_are_refused() {
        let access = access();
        let uri: Uri = "/healthz".parse().unwrap();
        let foreign = headers(&[("origin", "https://evil.example")]);
        let refused = access.check_api(&Method::GET, &uri, &foreign).unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let ours = headers(&[("origin", "https://studio.example")]);
        assert!(access.check_api(&Method::GET, &uri, &ours).is_none());
        assert_eq!(
            access
                .check_robot(&"/".parse().unwrap(), &foreign)
                .map_err(|r| r.response().status()),
            Err(StatusCode::FORBIDDEN)
        );
        // No Origin header (robots, curl): not a browser, not refused.
        assert!(
            access
                .check_api(&Method::GET, &uri, &headers(&[]))
                .is_none()
        );
    }
}
