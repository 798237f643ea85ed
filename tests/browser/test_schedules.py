"""Schedules: a cron trigger from the form, occurrences in the schedule's own zone, delete."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import expect


def test_a_recurring_trigger_shows_its_occurrences_in_its_zone(server, start_robot, open_page):
    start_robot(server, "PC-1", "00AA00000001")
    page = open_page(server, "#/schedules")
    expect(page.get_by_text("No schedules yet")).to_be_visible()
    page.get_by_role("link", name="New schedule").click()
    page.get_by_label("Package name").fill("nightly-report")
    page.get_by_label("Package path").fill("reports/nightly.std")
    page.get_by_label("Robot address").fill("00AA00000001")
    expect(page.get_by_label("Robot name")).to_have_value("PC-1")
    page.get_by_label("Time zone").fill("America/New_York")
    page.get_by_label("Cron").fill("30 9 * * MON-FRI")
    page.get_by_role("button", name="Trigger").click()

    expect(page).to_have_url(re.compile(r"#/schedules/\d+$"))
    schedule_id = int(page.url.rsplit("/", 1)[1])
    schedule = server.get(f"/api/schedules/{schedule_id}")
    assert schedule["timezone"] == "America/New_York"
    first = datetime.fromisoformat(schedule["next_occurrences"][0].replace("Z", "+00:00"))
    local = first.astimezone(ZoneInfo("America/New_York"))
    shown = page.locator(f'time[datetime="{schedule["next_occurrences"][0]}"]').first
    # 09:30 in New York (EST or EDT), whatever the browser's own zone (Berlin here).
    expect(shown).to_have_text(re.compile(local.strftime("%Y-%m-%d 09:30:00") + r" (EST|EDT)"))

    page.get_by_role("navigation", name="Views").get_by_role("link", name="Schedules").click()
    row = page.get_by_role("table", name="Schedules").get_by_role("row").filter(has_text="nightly-report")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("30 9 * * MON-FRI")
    row.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Delete schedule {schedule_id}?")
    expect(dialog.get_by_role("button", name="Keep")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(row).to_contain_text("active")
    assert server.get(f"/api/schedules/{schedule_id}")["active"] is True

    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(row).to_contain_text("deleted")
    assert server.get(f"/api/schedules/{schedule_id}")["active"] is False


def test_pause_and_resume_from_the_list(server, start_robot, open_page):
    start_robot(server, "PC-1", "00AA00000001")
    schedule = server.trigger("00AA00000001", "PC-1", "weekly-close",
                              {"cron": "0 18 * * FRI", "timezone": "Asia/Tokyo"})
    schedule_id = schedule["id"]
    page = open_page(server, "#/schedules")
    row = page.get_by_role("table", name="Schedules").get_by_role("row").filter(has_text="weekly-close")
    expect(row).to_contain_text("active")
    # The occurrences in the schedule's zone, as the server lists them locally.
    local = schedule["next_occurrences_local"][0]
    assert local.endswith("+09:00") and "T18:00:00" in local
    expect(row.locator(f'time[datetime="{schedule["next_occurrences"][0]}"]')).to_have_text(
        re.compile(local[:10] + r" 18:00:00 (JST|UTC\+09:00|GMT\+9)"))
    expect(row.get_by_role("button", name="Resume")).to_have_count(0)

    row.get_by_role("button", name="Pause").click()
    expect(row).to_contain_text("paused")
    expect(page.get_by_text(f"Schedule {schedule_id} paused.")).to_be_visible()
    paused = server.get(f"/api/schedules/{schedule_id}")
    assert paused["paused"] is True and paused["next_run_at"] is None
    # While paused it still shows what it would run if resumed now.
    expect(row.locator("time").first).to_be_visible()

    row.get_by_role("button", name="Resume").click()
    expect(row).to_contain_text("active")
    expect(row.get_by_role("button", name="Pause")).to_be_visible()
    resumed = server.get(f"/api/schedules/{schedule_id}")
    assert resumed["paused"] is False and resumed["next_run_at"] is not None
    kinds = [e["type"] for e in server.get(f"/api/events?subject=schedules/{schedule_id}")["items"]]
    assert kinds == ["schedule.created", "schedule.paused", "schedule.resumed"]
