"""The screenshots in docs/ (README.md, docs/UI.md), taken from a real server with simulated
robots on every run, so they always show the page as it is. Each one also checks that its view
shows what the scene put there."""

import re
import time

import pytest
from playwright.sync_api import expect

TOMORROW = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))


@pytest.fixture
def scene(server, start_robot):
    """A small fleet: robots online and offline, jobs in every state, two schedules."""
    laptop = start_robot(server, "LAPTOP-TAUNF8FD", "001AFFDB45C2")
    finance = start_robot(server, "PC-FINANCE-01", "001AFFDB45C3")
    flaky = start_robot(server, "PC-FINANCE-02", "001AFFDB45C4", "--report", "failure")
    night = start_robot(server, "PC-NIGHT-07", "001AFFDB45C7")
    night.stop()
    server.wait_for(lambda: not server.get("/api/robots/001AFFDB45C7")["online"], "robot offline")

    done = [
        (laptop, server.trigger("001AFFDB45C2", "LAPTOP-TAUNF8FD", "invoice-import")["id"]),
        (finance, server.trigger("001AFFDB45C3", "PC-FINANCE-01", "bank-reconciliation")["id"]),
        (flaky, server.trigger("001AFFDB45C4", "PC-FINANCE-02", "vendor-payments")["id"]),
        (laptop, server.trigger("001AFFDB45C2", "LAPTOP-TAUNF8FD", "crm-sync")["id"]),
    ]
    for robot, job in done:
        robot.wait_event(lambda e, job=job: e.get("event") == "reported" and e.get("job_id") == job, "report")
    later = {"date": TOMORROW, "time": "07:30", "timezone": "Europe/Berlin"}
    server.trigger("001AFFDB45C3", "PC-FINANCE-01", "month-end-close", later)
    cancelled = server.trigger("001AFFDB45C2", "LAPTOP-TAUNF8FD", "old-export", later)["id"]
    server.post(f"/api/jobs/{cancelled}/cancel")
    waiting = server.trigger("001AFFDB45C7", "PC-NIGHT-07", "nightly-backup")["id"]
    for cron, zone, package, address, name in [
        ("0 9 * * MON-FRI", "Europe/Berlin", "daily-report", "001AFFDB45C3", "PC-FINANCE-01"),
        ("*/30 * * * *", "America/New_York", "queue-check", "001AFFDB45C2", "LAPTOP-TAUNF8FD"),
    ]:
        server.trigger(address, name, package, {"cron": cron, "timezone": zone})
    failed = done[2][1]
    server.wait_for(lambda: server.get(f"/api/jobs/{failed}")["status"] == "Failed", "the failure")
    return {"waiting": waiting, "failed": failed}


def test_the_documentation_screenshots(server, scene, start_robot, receiver, open_page, screenshots):
    page = open_page(server, "#/robots")
    expect(page.get_by_role("table", name="Robots").get_by_role("row")).to_have_count(5)
    expect(page.get_by_text("4 robots, 3 online.")).to_be_visible()
    page.screenshot(path=screenshots / "ui-robots.png")

    page.get_by_role("navigation", name="Views").get_by_role("link", name="Jobs").click()
    jobs = page.get_by_role("table", name="Jobs")
    expect(jobs.get_by_role("row")).to_have_count(8)
    expect(jobs).to_contain_text("Due, robot offline since")
    page.screenshot(path=screenshots / "ui-jobs.png")

    page.get_by_role("link", name=str(scene["failed"]), exact=True).click()
    expect(page.get_by_role("heading", name=f"Job {scene['failed']}")).to_contain_text("Failed")
    page.screenshot(path=screenshots / "ui-job.png")

    page.goto(f"{server.url}/ui/#/jobs/new")
    page.get_by_label("Package name").fill("../payroll")
    page.get_by_label("Package path").fill("studioPackages/payroll.std")
    page.get_by_label("Robot address").fill("001AFFDB45C3")
    expect(page.get_by_label("Robot name")).to_have_value("PC-FINANCE-01")
    page.get_by_label("Run at").fill("2020-03-01T09:00")
    page.get_by_role("button", name="Trigger").click()
    expect(page.get_by_text("2 fields failed validation")).to_be_visible()
    page.get_by_role("heading", name="Trigger a job").focus()
    page.screenshot(path=screenshots / "ui-trigger.png")

    page.get_by_role("navigation", name="Views").get_by_role("link", name="Schedules").click()
    expect(page.get_by_role("table", name="Schedules").get_by_role("row")).to_have_count(3)
    page.screenshot(path=screenshots / "ui-schedules.png")

    # The live feed fills as things happen after the page was opened.
    page.get_by_role("navigation", name="Views").get_by_role("link", name="Events").click()
    expect(page.get_by_text("No event yet since this page was opened")).to_be_visible()
    start_robot(server, "PC-NIGHT-07", "001AFFDB45C7")
    server.wait_for(lambda: server.get(f"/api/jobs/{scene['waiting']}")["status"] == "Succeeded", "the waiting job")
    flaky = server.trigger("001AFFDB45C4", "PC-FINANCE-02", "vendor-payments")["id"]
    server.wait_for(lambda: server.get(f"/api/jobs/{flaky}")["status"] == "Failed", "the failure")
    events = page.get_by_role("table", name="Events")
    expect(events.get_by_role("row").filter(has_text="job.failed")).to_have_count(1)
    expect(events.get_by_role("row").filter(has_text="robot.online")).to_have_count(1)
    page.screenshot(path=screenshots / "ui-events.png")

    server.post("/api/webhooks", {"url": "http://127.0.0.1:9/chat", "types": ["job.failed", "robot.unreachable"],
                                  "description": "operators' chat", "format": "chat"})
    page.get_by_role("navigation", name="Views").get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("table", name="Webhooks").get_by_role("row")).to_have_count(2)
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("Event types").fill("job.*")
    page.get_by_label("Description").fill("ticket system")
    page.get_by_role("button", name="Add webhook").click()
    expect(page.get_by_role("textbox", name="Secret")).to_have_value(re.compile("^whsec_"))
    expect(page.get_by_role("table", name="Webhooks").get_by_role("row")).to_have_count(3)
    page.screenshot(path=screenshots / "ui-webhooks.png", full_page=True)

    phone = open_page(server, "#/robots", width=390, height=844)
    expect(phone.get_by_role("table", name="Robots")).to_be_visible()
    phone.screenshot(path=screenshots / "ui-robots-phone.png")
    phone.goto(f"{server.url}/ui/#/jobs")
    expect(phone.get_by_role("table", name="Jobs")).to_be_visible()
    phone.screenshot(path=screenshots / "ui-jobs-phone.png")
