"""How the server hands out the page: where it is, its headers, its assets. Plain HTTP."""

import re
import urllib.error
import urllib.request

import pytest

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, method: str = "GET"):
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, method=method), timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_root_redirects_to_the_page(server, method):
    status, headers, _ = fetch(server.url + "/", method)
    assert status == 307
    assert headers["Location"] == "/ui/"


def test_a_websocket_upgrade_on_the_root_is_still_a_robot(server, start_robot):
    robot = start_robot(server, "PC-ROOT", "00AA00BB00CC")
    assert robot.seen[0]["event"] == "registered"
    assert server.get("/api/robots/00AA00BB00CC")["online"] is True


def test_the_page_has_a_strict_policy_and_is_revalidated(server):
    status, headers, body = fetch(server.url + "/ui/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"
    html = body.decode()
    assert "<script>" not in html and " style=" not in html
    assert "http://" not in html and "https://" not in html


def test_assets_are_immutable_under_a_content_hash(server):
    _, _, body = fetch(server.url + "/ui/")
    html = body.decode()
    prefix = re.search(r'src="(assets/[0-9a-f]{16})/app\.js"', html).group(1)
    expected = {
        "app.js": "text/javascript; charset=utf-8",
        "style.css": "text/css; charset=utf-8",
        "views/jobs.js": "text/javascript; charset=utf-8",
        "favicon.svg": "image/svg+xml",
    }
    for name, content_type in expected.items():
        status, headers, _ = fetch(f"{server.url}/ui/{prefix}/{name}")
        assert status == 200, name
        assert headers["Content-Type"] == content_type
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, _ = fetch(f"{server.url}/ui/assets/0123456789abcdef/app.js")
    assert status == 404
    assert headers["Content-Type"] == "application/problem+json"
    status, _, _ = fetch(f"{server.url}/ui/no-such-page")
    assert status == 404


def test_the_page_holds_no_data_and_needs_no_token(start_server, start_robot):
    server = start_server("--api-token", "s3cret")
    start_robot(server, "SECRET-NAME", "00DEADBEEF01")
    status, _, body = fetch(server.url + "/ui/")
    assert status == 200
    assert b"00DEADBEEF01" not in body and b"SECRET-NAME" not in body
    status, _, _ = fetch(server.url + "/api/robots")
    assert status == 401
