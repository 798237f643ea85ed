"""The Events view: the live feed of the server's events, filtered by type and subject, the
archive page by page, all agreeing with `GET /api/events`."""

import re

from playwright.sync_api import expect


def rows(table, text):
    return table.get_by_role("row").filter(has_text=text)


def test_the_events_feed(server, start_robot, open_page):
    robot = start_robot(server, "PC-EVENTS", "00AA000000E1")
    failing = start_robot(server, "PC-FAILS", "00AA000000E2", "--report", "failure")
    page = open_page(server, "#/events")
    expect(page.get_by_role("status").filter(has_text=re.compile("^Live$"))).to_be_visible()
    expect(page.get_by_text("No event yet since this page was opened")).to_be_visible()
    events = page.get_by_role("table", name="Events")

    job = server.trigger("00AA000000E1", "PC-EVENTS", "feed-me")["id"]
    robot.wait_event(lambda e: e.get("event") == "reported" and e.get("job_id") == job, "report")
    server.wait_for(lambda: server.get(f"/api/jobs/{job}")["status"] == "Succeeded", "success")
    failed = server.trigger("00AA000000E2", "PC-FAILS", "break-me")["id"]
    server.wait_for(lambda: server.get(f"/api/jobs/{failed}")["status"] == "Failed", "the failure")

    # Every event of the job, as the API has them, newest on top, with its reason.
    stored = server.get(f"/api/events?subject=jobs/{job}")["items"]
    assert [e["type"] for e in stored][0] == "job.created" and stored[-1]["type"] == "job.succeeded"
    expect(rows(events, f"jobs/{job}")).to_have_count(len(stored))
    for event in stored:
        row = rows(events, f"jobs/{job}").filter(has_text=event["type"]).filter(has_text=event["id"])
        expect(row).to_have_count(1)
        if event["data"]["reason"]:
            expect(row).to_contain_text(event["data"]["reason"])
    failure = server.get(f"/api/events?subject=jobs/{failed}&type=job.failed")["items"]
    assert len(failure) == 1
    expect(rows(events, f"jobs/{failed}").filter(has_text="job.failed")).to_contain_text(failure[0]["data"]["reason"])
    newest = server.get(f"/api/events?after={int(failure[0]['id']) - 1}")["items"][-1]
    expect(events.get_by_role("row").nth(1)).to_contain_text(newest["id"])

    # By subject: one job's events only.
    page.get_by_label("Subject").fill(f"jobs/{job}")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(rf"subject=jobs%2F{job}"))
    expect(events.get_by_role("row")).to_have_count(len(stored) + 1)

    # By type, with a prefix; new events keep coming in under the filter.
    page.get_by_label("Subject").fill("")
    page.get_by_label("Type").fill("robot.*")
    page.get_by_label("Type").press("Enter")
    expect(page.get_by_text("No event matching the filter since this page was opened")).to_be_visible()
    expect(rows(events, "job.")).to_have_count(0)
    robot.stop()
    expect(rows(events, "robots/00AA000000E1").filter(has_text="robot.offline")).to_have_count(1, timeout=3000)
    start_robot(server, "PC-EVENTS", "00AA000000E1")
    expect(rows(events, "robots/00AA000000E1").filter(has_text="robot.online")).to_have_count(1, timeout=3000)
    expect(rows(events, "job.")).to_have_count(0)

    # The archive: what the server keeps, oldest first, as the API lists it.
    page.get_by_label("Type").fill("")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("button", name="Show the archive").click()
    archive = page.get_by_role("table", name="Event archive")
    kept = server.get("/api/events?limit=100")["items"]
    expect(archive.get_by_role("row")).to_have_count(len(kept) + 1)
    expect(archive.get_by_role("row").nth(1)).to_contain_text(kept[0]["type"])

    # A subject leads to its view.
    rows(events, f"jobs/{failed}").filter(has_text="job.failed").get_by_role("link", name=f"jobs/{failed}").click()
    expect(page.get_by_role("heading", name=f"Job {failed}")).to_contain_text("Failed")
    expect(page.get_by_text(f"Failed: {failure[0]['data']['job']['last_error']}")).to_be_visible()


def test_a_refused_filter_shows_the_servers_problem(server, open_page):
    page = open_page(server, "#/events")
    page.get_by_label("Subject").fill("nonsense")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("button", name="Show the archive").click()
    expect(page.get_by_role("alert").filter(has_text="nonsense")).to_contain_text("is not a subject")
