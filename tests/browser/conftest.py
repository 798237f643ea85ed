"""Fixtures of the browser tests: the real server binary on a free loopback port in a temporary
folder, simulated robots (the project's own `rpa-robot` client), and Debian's Chromium driven
by Playwright (never a browser Playwright downloads).

Settings come from the environment (tests/browser/run.sh sets them):
  RPA_SERVER_BIN   the socket-server binary (default: target/release, else target/debug)
  RPA_ROBOT_BIN    the rpa-robot binary (same default)
  RPA_CHROMIUM     the browser (default /usr/bin/chromium)
  RPA_UI_SCREENSHOTS  where the documentation's screenshots go (default: docs/img)
  RPA_UI_DIR       while working on the page: serve its assets (not index.html) from this folder
                   (crates/server/ui) instead of the binary, so that a change needs no rebuild
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]

# Waits on the page: generous for a loaded CI machine; the tests that judge speed measure it.
expect.set_options(timeout=10_000)


def _binary(variable: str, name: str) -> Path:
    given = os.environ.get(variable)
    if given:
        path = Path(given)
    else:
        candidates = [ROOT / "target" / "release" / name, ROOT / "target" / "debug" / name]
        path = next((c for c in candidates if c.exists()), candidates[0])
    if not path.exists():
        pytest.exit(f"{name} not found at {path}: build it, or set {variable}", returncode=2)
    return path.resolve()


class ApiError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class Server:
    """A running socket-server, stopped with SIGTERM at the end of the test."""

    def __init__(self, binary: Path, args: list[str]):
        self.folder = Path(tempfile.mkdtemp(prefix="rpa-ui-"))
        self.binary = binary
        self.args = args
        self.token = None
        if "--api-token" in args:
            self.token = args[args.index("--api-token") + 1]
        self._spawn("127.0.0.1:0")

    def _spawn(self, listen: str):
        env = {k: v for k, v in os.environ.items() if k not in ("PORT", "DATABASE_URL", "RUST_LOG")}
        env["TZ"] = "UTC"
        self.process = subprocess.Popen(
            [str(self.binary), "--listen", listen, "--log-stderr", "false", *self.args],
            cwd=self.folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + 30
        self.address = None
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith("listening on "):
                self.address = line.removeprefix("listening on ").strip()
                break
        if self.address is None:
            self.process.kill()
            raise RuntimeError(f"the server did not start: {self.process.stderr.read()}")
        self.url = f"http://{self.address}"
        self.ws_url = f"ws://{self.address}/"

    @staticmethod
    def _pump(stream, lines):
        for line in stream:
            lines.put(line)

    def request(self, method: str, path: str, body=None, headers=None, token=True):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if token and self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode()
                return response.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as error:
            text = error.read().decode()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = {"text": text}
            raise ApiError(error.code, parsed) from None

    def get(self, path: str):
        return self.request("GET", path)[1]

    def post(self, path: str, body=None):
        return self.request("POST", path, body)[1]

    def trigger(self, address: str, name: str, package: str = "invoice-run", schedule=None) -> dict:
        schedule = schedule or {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return self.post(
            "/api/jobs",
            {
                "Package": {"package_name": package, "path": f"studioPackages/{package}.std"},
                "Robot": {"robot_name": name, "robot_address": address},
                "Schedule": schedule,
            },
        )

    def wait_for(self, check, what: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def _terminate(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self, while_down=None):
        """Stops the server and starts it again on the same address, with the same data;
        `while_down()` runs in between."""
        address = self.address
        self._terminate()
        if while_down:
            while_down()
        self._spawn(address)
        assert self.address == address, (self.address, address)

    def stop(self):
        self._terminate()
        shutil.rmtree(self.folder, ignore_errors=True)


class Robot:
    """A simulated robot: the rpa-robot client, registered before the constructor returns."""

    def __init__(self, binary: Path, server: Server, name: str, address: str, extra: list[str]):
        self.name = name
        self.address = address
        self.process = subprocess.Popen(
            [str(binary), "--url", server.ws_url, "--name", name, "--address", address, *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.events: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_event(lambda e: e.get("event") in ("registered", "connected"), "registration")

    def _pump(self):
        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue

    def wait_event(self, predicate, what: str, timeout: float = 15.0) -> dict:
        for event in self.seen:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(event)
            if predicate(event):
                return event
        raise AssertionError(f"robot {self.address}: no {what}; saw {self.seen}")

    def package(self, job_id: int) -> dict:
        return self.wait_event(
            lambda e: e.get("event") == "package" and e.get("job_id") == job_id, f"package of job {job_id}"
        )

    def stop(self):
        """Closes the connection the way a robot shutting down does (close frame 1000)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def binaries():
    return {"server": _binary("RPA_SERVER_BIN", "socket-server"), "robot": _binary("RPA_ROBOT_BIN", "rpa-robot")}


@pytest.fixture
def start_server(binaries):
    started = []

    def start(*args: str) -> Server:
        server = Server(binaries["server"], list(args))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server) -> Server:
    return start_server()


@pytest.fixture
def start_robot(binaries):
    started = []

    def start(server: Server, name: str, address: str, *extra: str) -> Robot:
        robot = Robot(binaries["robot"], server, name, address, list(extra))
        started.append(robot)
        return robot

    yield start
    for robot in started:
        robot.stop()


@pytest.fixture(scope="session")
def browser():
    chromium = os.environ.get("RPA_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.exit(f"no browser at {chromium}: apt-get install chromium", returncode=2)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageErrors:
    """Script errors and policy violations on the page fail the test that caused them."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message):
        # Anything the page's policy blocked would silently not work for users.
        if message.type == "error" and "Content Security Policy" in message.text:
            self.errors.append(message.text)


def _assets_from(folder: Path):
    """A route handler answering /ui/assets/<digest>/<name> with the file from `folder`."""

    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}

    def handle(route):
        name = route.request.url.split("/ui/assets/", 1)[1].split("?")[0].split("/", 1)[1]
        path = (folder / name).resolve()
        if folder not in path.parents or not path.is_file():
            route.fulfill(status=404, body="")
            return
        route.fulfill(status=200, body=path.read_bytes(), content_type=types.get(path.suffix, "application/octet-stream"))

    return handle


@pytest.fixture
def open_page(browser):
    contexts = []
    watchers = []

    def open_(server: Server, route: str = "", width: int = 1280, height: int = 800, before=None):
        context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US", timezone_id="Europe/Berlin")
        contexts.append(context)
        page = context.new_page()
        watchers.append(PageErrors(page))
        if os.environ.get("RPA_UI_DIR"):
            page.route("**/ui/assets/**", _assets_from(Path(os.environ["RPA_UI_DIR"]).resolve()))
        if before:
            before(page)
        page.goto(f"{server.url}/ui/{route}")
        return page

    yield open_
    for context in contexts:
        context.close()
    errors = [e for w in watchers for e in w.errors]
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("RPA_UI_SCREENSHOTS", ROOT / "docs" / "img"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Receiver:
    """A webhook receiver on loopback: records every POST (headers and body) and answers
    `status` (200 unless told otherwise)."""

    def __init__(self):
        self.status = 200
        self.received: queue.Queue[dict] = queue.Queue()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.received.put({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def next(self, predicate, what: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                delivery = self.received.get(timeout=0.1)
            except queue.Empty:
                continue
            if predicate(delivery):
                return delivery
        raise AssertionError(f"the receiver got no {what}")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    started = Receiver()
    yield started
    started.stop()


class Requests:
    """The API requests a page makes (not the event stream), to tell polling from live."""

    def __init__(self, page):
        self.seen: list[tuple[float, str, dict]] = []
        page.on("request", self._record)

    def _record(self, request):
        if "/api/" in request.url:
            self.seen.append((time.monotonic(), request.url, request.headers))

    def streams(self) -> list[dict]:
        return [headers for _, url, headers in self.seen if "text/event-stream" in headers.get("accept", "")]

    def reads_since(self, moment: float) -> list[str]:
        return [url for at, url, headers in self.seen if at >= moment and "text/event-stream" not in headers.get("accept", "")]
