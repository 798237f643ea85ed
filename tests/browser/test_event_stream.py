"""The page's side of the live stream (events.md), against a stand-in for `GET /api/events`
that the browser's request interception puts in the server's place, for what the real server
cannot be made to do on cue: the exact bytes of the stream (a comment, CRLF line ends), a cut
at a chosen moment, and a 410 after retention. The page reads the Server-Sent Events with fetch
(the bearer header included), shows them, resumes with Last-Event-ID after the stream ends,
and after a 410 starts from now and reads its views anew. test_live.py tests the same page
against the server's own stream."""

import http.server
import json
import queue
import threading
import time

from playwright.sync_api import expect


def cloud_event(event_id: int, kind: str, subject: str, data: dict) -> dict:
    return {
        "specversion": "1.0",
        "id": str(event_id),
        "source": "/socket-server",
        "type": kind,
        "subject": subject,
        "time": "2027-03-28T01:00:00.012345Z",
        "datacontenttype": "application/json",
        "data": data,
    }


def sse(*events: dict) -> str:
    # A comment, then each event; CRLF line ends on the first one, as the format allows.
    text = ": keep-alive\n\n"
    for index, event in enumerate(events):
        end = "\r\n" if index == 0 else "\n"
        text += f"id: {event['id']}{end}event: {event['type']}{end}data: {json.dumps(event)}{end}{end}"
    return text


class StandIn:
    """A small SSE server on loopback that holds each stream open until told to cut it. The
    page's requests to /api/events are rerouted here, unseen by the page."""

    def __init__(self):
        self.requests: list[dict] = []
        self.streams: list[queue.Queue] = []
        # The next stream request is answered 410 (retention removed what it asks for).
        self.gone = False
        self.lock = threading.Lock()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if "text/event-stream" not in (self.headers.get("Accept") or ""):
                    body = b'{"items":[],"next_after":null}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                outbox: queue.Queue = queue.Queue()
                with stand_in.lock:
                    stand_in.requests.append({k.lower(): v for k, v in self.headers.items()})
                    gone = stand_in.gone
                    stand_in.gone = False
                    if not gone:
                        stand_in.streams.append(outbox)
                if gone:
                    # As the server answers a cursor below what retention kept.
                    body = json.dumps({"type": "about:blank", "title": "Gone", "status": 410, "code": "events_trimmed",
                                       "detail": "the events after this id are no longer kept"}).encode()
                    self.send_response(410)
                    self.send_header("Content-Type", "application/problem+json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
                while True:
                    try:
                        item = outbox.get(timeout=0.5)
                    except queue.Empty:
                        item = ": keep-alive\n\n"
                    if item is None:
                        return
                    try:
                        self.wfile.write(item.encode())
                        self.wfile.flush()
                    except OSError:
                        return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/events"

    def route(self, route):
        query = route.request.url.partition("?")[2]
        route.continue_(url=self.url + (f"?{query}" if query else ""))

    def send(self, *events: dict):
        self.streams[-1].put(sse(*events))

    def cut(self):
        """Ends the current stream, as a restarting server or a proxy would."""
        self.streams[-1].put(None)

    def stop(self):
        for stream in self.streams:
            stream.put(None)
        self.server.shutdown()


def wait_until(page, check, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        # Not time.sleep: the interception handler only runs while Playwright is called.
        page.wait_for_timeout(50)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_page_reads_the_stream_and_resumes_with_last_event_id(start_server, start_robot, open_page):
    server = start_server("--api-token", "s3cret")
    first = start_robot(server, "PC-LIVE", "00AA000000AB")
    robot = server.get("/api/robots/00AA000000AB")
    stand_in = StandIn()
    try:
        page = open_page(server, "#/events", before=lambda p: p.route("**/api/events*", stand_in.route))
        page.get_by_label("API token").fill("s3cret")
        page.get_by_role("button", name="Sign in").click()
        live = page.get_by_role("status").filter(has_text="Live")
        expect(live).to_be_visible()
        wait_until(page, lambda: stand_in.streams, "the stream request")
        assert stand_in.requests[0].get("last-event-id") is None
        assert stand_in.requests[0].get("authorization") == "Bearer s3cret"

        stand_in.send(
            cloud_event(41, "robot.online", "robots/00AA000000AB", {"reason": None, "robot": robot}),
            cloud_event(42, "job.failed", "jobs/7", {
                "reason": "the robot reported failure: file not found",
                "job": {"id": 7, "status": "Failed", "robot_address": "00AA000000AB"},
            }),
        )
        events = page.get_by_role("table", name="Events")
        expect(events.get_by_role("row").filter(has_text="job.failed")).to_contain_text("the robot reported failure: file not found")
        expect(events.get_by_role("row").filter(has_text="robot.online")).to_contain_text("robots/00AA000000AB")

        # The stream ends: the page comes back by itself and resumes after the last id it saw.
        stand_in.cut()
        wait_until(page, lambda: len(stand_in.requests) >= 2, "a reconnection")
        assert stand_in.requests[1].get("last-event-id") == "42"
        expect(live).to_be_visible()
        stand_in.send(cloud_event(43, "robot.offline", "robots/00AA000000AB", {
            "reason": "connection closed", "robot": {**robot, "online": False},
        }))
        expect(events.get_by_role("row").nth(1)).to_contain_text("robot.offline")
        expect(events.get_by_role("row").nth(1)).to_contain_text("connection closed")

        page.get_by_label("Type").fill("job.*")
        page.get_by_role("button", name="Filter").click()
        expect(events.get_by_role("row").filter(has_text="robot.")).to_have_count(0)
        expect(events.get_by_role("row").filter(has_text="job.failed")).to_have_count(1)

        # While the stream is live the page does not poll: an event is what brings a change.
        page.get_by_role("navigation", name="Views").get_by_role("link", name="Robots").click()
        row = page.get_by_role("table", name="Robots").get_by_role("row").filter(has_text="00AA000000AB")
        expect(row).to_contain_text("online")
        first.stop()
        server.wait_for(lambda: not server.get("/api/robots/00AA000000AB")["online"], "robot offline")
        page.wait_for_timeout(1500)
        expect(row).to_contain_text("online")
        stand_in.send(cloud_event(44, "robot.offline", "robots/00AA000000AB", {
            "reason": "connection closed", "robot": server.get("/api/robots/00AA000000AB"),
        }))
        expect(row).to_contain_text("offline", timeout=2000)
    finally:
        stand_in.stop()


def test_after_a_410_the_page_starts_from_now_and_reads_its_views_again(server, start_robot, open_page):
    robot = start_robot(server, "PC-GONE", "00AA000000F1")
    record = server.get("/api/robots/00AA000000F1")
    stand_in = StandIn()
    reads = []
    try:
        def before(page):
            page.route("**/api/events*", stand_in.route)
            page.on("request", lambda r: reads.append((time.monotonic(), r.url)) if "/api/robots" in r.url else None)

        page = open_page(server, "#/robots", before=before)
        live = page.get_by_role("status").filter(has_text="Live")
        expect(live).to_be_visible()
        row = page.get_by_role("table", name="Robots").get_by_role("row").filter(has_text="00AA000000F1")
        expect(row).to_contain_text("online")
        sent_at = time.monotonic()
        stand_in.send(cloud_event(50, "robot.updated", "robots/00AA000000F1", {"reason": None, "robot": record}))
        wait_until(page, lambda: any(at > sent_at for at, _ in reads), "the refresh the event brings")

        # Meanwhile the robot went away, and retention removed the events after 50.
        robot.stop()
        server.wait_for(lambda: not server.get("/api/robots/00AA000000F1")["online"], "robot offline")
        cut_at = time.monotonic()
        stand_in.gone = True
        stand_in.cut()
        wait_until(page, lambda: len(stand_in.requests) >= 3, "a stream after the 410")
        assert stand_in.requests[1].get("last-event-id") == "50"
        assert stand_in.requests[2].get("last-event-id") is None
        expect(live).to_be_visible()
        # The view is read again, without any event: it shows what happened in the gap.
        expect(row).to_contain_text("offline", timeout=3000)
        assert any(at > cut_at for at, _ in reads)

        page.get_by_role("navigation", name="Views").get_by_role("link", name="Events").click()
        expect(page.get_by_role("note").filter(has_text="removed by the server's retention")).to_be_visible()
    finally:
        stand_in.stop()
