"""Live: the page follows the server's own event stream (`GET /api/events`, read with fetch),
so that changes show within a second without a reload and without polling; it comes back by
itself after the server restarts, resuming with Last-Event-ID; the stream carries the token."""

import re
import time

from playwright.sync_api import expect

from conftest import Requests


def open_watched(open_page, server, route=""):
    """The page, and the API requests it makes from its very first one."""
    watched = []
    page = open_page(server, route, before=lambda p: watched.append(Requests(p)))
    return page, watched[0]


def live_state(page, text="Live"):
    return page.get_by_role("status").filter(has_text=re.compile(f"^{re.escape(text)}$"))


def robot_row(page, address):
    return page.get_by_role("table", name="Robots").get_by_role("row").filter(has_text=address)


def job_row(page, job_id):
    return page.get_by_role("table", name="Jobs").get_by_role("row").filter(
        has=page.get_by_role("link", name=str(job_id), exact=True)
    )


def test_changes_arrive_through_the_stream_and_nothing_polls(server, start_robot, open_page):
    first = start_robot(server, "PC-1", "00AA00000001")
    page, requests = open_watched(open_page, server)
    expect(live_state(page)).to_be_visible()
    expect(robot_row(page, "00AA00000001")).to_contain_text("online")
    page.evaluate("window.__sameDocument = true")
    streams = requests.streams()
    assert len(streams) == 1, streams
    assert "last-event-id" not in streams[0]

    # Once the stream is open the view is read once more (what changed before it opened is not
    # in it); after that, while nothing happens, the page asks the server for nothing.
    page.wait_for_timeout(1000)
    quiet = time.monotonic()
    page.wait_for_timeout(2000)
    assert requests.reads_since(quiet) == []

    started = time.monotonic()
    second = start_robot(server, "PC-2", "00AA00000002")
    expect(robot_row(page, "00AA00000002")).to_contain_text("online", timeout=3000)
    appeared = time.monotonic() - started
    started = time.monotonic()
    first.stop()
    expect(robot_row(page, "00AA00000001")).to_contain_text("offline", timeout=3000)
    went_offline = time.monotonic() - started
    print(f"new robot shown after {appeared:.2f} s, offline after {went_offline:.2f} s")

    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert len(requests.streams()) == 1, "the stream was opened again without a cut"
    expect(page.get_by_text("2 robots, 1 online.")).to_be_visible()
    second.stop()


def test_a_job_triggered_from_the_form_reaches_its_robot_and_updates_live(server, start_robot, open_page):
    away = start_robot(server, "PC-AWAY", "00AA000000A1")
    away.stop()
    server.wait_for(lambda: not server.get("/api/robots/00AA000000A1")["online"], "robot offline")

    page = open_page(server, "#/jobs/new")
    expect(live_state(page)).to_be_visible()
    page.get_by_label("Package name").fill("month-end")
    page.get_by_label("Package path").fill("studioPackages/month-end.std")
    page.get_by_label("Robot address").fill("00AA000000A1")
    expect(page.get_by_label("Robot name")).to_have_value("PC-AWAY")
    page.get_by_role("button", name="Trigger").click()
    expect(page).to_have_url(re.compile(r"#/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])

    heading = page.get_by_role("heading", name=f"Job {job_id}")
    expect(heading).to_contain_text("Pending")
    # Why it waits, in plain words.
    expect(page.get_by_text(re.compile(r"Due, robot offline since .*: it is sent when the robot connects\."))).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    page.evaluate("window.__sameDocument = true")

    robot = start_robot(server, "PC-AWAY", "00AA000000A1")
    assert robot.package(job_id)["package"]["package_name"] == "month-end"
    robot.wait_event(lambda e: e.get("event") == "reported" and e.get("job_id") == job_id, "report")
    expect(heading).to_contain_text("Succeeded", timeout=3000)
    expect(page.get_by_text("The robot reported success.")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)

    # The job's history: every event of the job, as the API lists it.
    events = server.get(f"/api/jobs/{job_id}")["events"]
    assert [e["type"] for e in events][:1] == ["job.created"] and events[-1]["to"] == "Succeeded"
    history = page.get_by_role("table", name="History")
    expect(history.get_by_role("row")).to_have_count(len(events) + 1)
    for index, event in enumerate(events):
        row = history.get_by_role("row").nth(index + 1)
        expect(row).to_contain_text(event["type"])
        expect(row).to_contain_text(event["reason"])
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"


def test_a_cancel_shows_in_another_tab(server, start_robot, open_page):
    start_robot(server, "PC-1", "00AA00000001")
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    job = server.trigger("00AA00000001", "PC-1", "cancel-me", {"date": tomorrow, "time": "09:00"})["id"]

    watcher, requests = open_watched(open_page, server, "#/jobs")
    expect(live_state(watcher)).to_be_visible()
    expect(job_row(watcher, job)).to_contain_text("Waiting for its time")

    actor = open_page(server, f"#/jobs/{job}")
    actor.get_by_role("button", name="Cancel").click()
    expect(actor.get_by_role("heading", name=f"Job {job}")).to_contain_text("Cancelled")
    expect(actor.get_by_role("status").filter(has_text=f"Job {job} cancelled.")).to_be_visible()

    # The other tab did nothing: the job.cancelled event brought the change.
    expect(job_row(watcher, job)).to_contain_text("Cancelled", timeout=3000)
    expect(job_row(watcher, job).get_by_role("button", name="Cancel")).to_have_count(0)
    assert len(requests.streams()) == 1


def test_the_page_comes_back_after_a_restart_and_resumes_with_last_event_id(server, start_robot, open_page):
    page, requests = open_watched(open_page, server)
    expect(live_state(page)).to_be_visible()
    expect(page.get_by_text("No robots yet")).to_be_visible()
    start_robot(server, "PC-R", "00AA000000B1")
    expect(robot_row(page, "00AA000000B1")).to_contain_text("online")
    seen = [int(e["id"]) for e in server.get("/api/events")["items"]]

    def while_down():
        expect(live_state(page, "Reconnecting…")).to_be_visible()

    server.restart(while_down=while_down)
    expect(live_state(page)).to_be_visible(timeout=20_000)
    # The robot's connection went with the old process: the page shows it offline.
    expect(robot_row(page, "00AA000000B1")).to_contain_text("offline", timeout=3000)

    resumed = requests.streams()[1:]
    assert resumed, "no stream after the restart"
    cursors = [headers.get("last-event-id") for headers in resumed]
    assert all(c is not None for c in cursors), cursors
    # It resumes after the last event it received, which came before the restart.
    kept = [int(e["id"]) for e in server.get("/api/events")["items"]]
    assert int(cursors[0]) in kept and int(cursors[0]) >= max(seen), (cursors, seen, kept)

    # And it stays live after that.
    start_robot(server, "PC-R2", "00AA000000B2")
    expect(robot_row(page, "00AA000000B2")).to_contain_text("online", timeout=3000)


def test_the_stream_sends_the_token(start_server, start_robot, open_page):
    server = start_server("--api-token", "s3cret-stream")
    page, requests = open_watched(open_page, server)
    page.get_by_label("API token").fill("s3cret-stream")
    page.get_by_role("button", name="Sign in").click()
    expect(live_state(page)).to_be_visible()
    streams = requests.streams()
    assert streams, "no stream was opened"
    # Before signing in the page opens no stream; every stream sends the token as a bearer.
    assert all(headers.get("authorization") == "Bearer s3cret-stream" for headers in streams), streams

    robot = start_robot(server, "PC-TOKEN", "00AA000000C1")
    expect(robot_row(page, "00AA000000C1")).to_contain_text("online", timeout=3000)
    robot.stop()
    expect(robot_row(page, "00AA000000C1")).to_contain_text("offline", timeout=3000)

    page.get_by_role("navigation", name="Views").get_by_role("link", name="Events").click()
    expect(page.get_by_role("table", name="Events").get_by_role("row").filter(has_text="robot.offline")).to_have_count(1)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(live_state(page)).to_have_count(0)
    # Whoever signs in next in this tab sees nothing of the last session's feed.
    page.get_by_label("API token").fill("s3cret-stream")
    page.get_by_role("button", name="Sign in").click()
    expect(live_state(page)).to_be_visible()
    expect(page.get_by_text("No event yet since this page was opened")).to_be_visible()
    assert all(headers.get("authorization") == "Bearer s3cret-stream" for headers in requests.streams())
