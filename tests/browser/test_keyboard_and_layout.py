"""Keyboard only, and readable at 1280×800 and on a phone (390×844)."""

import pytest
from playwright.sync_api import expect


def tab_to(page, name: str, limit: int = 40):
    """Presses Tab until the focused element's accessible text is `name`."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement && (document.activeElement.textContent || '').trim()")
        if focused == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_a_job_can_be_triggered_with_the_keyboard_alone(server, start_robot, open_page):
    robot = start_robot(server, "PC-KEYS", "00AA0000000B")
    page = open_page(server)
    expect(page.get_by_role("table", name="Robots")).to_be_visible()

    tab_to(page, "Jobs")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Jobs")).to_be_focused()
    tab_to(page, "Trigger a job")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Trigger a job")).to_be_focused()

    page.keyboard.press("Tab")
    expect(page.get_by_label("Package name")).to_be_focused()
    page.keyboard.type("keyboard-run")
    page.keyboard.press("Tab")
    page.keyboard.type("pkgs/keyboard.std")
    page.keyboard.press("Tab")  # more package fields: left empty
    page.keyboard.press("Tab")
    expect(page.get_by_label("Robot address")).to_be_focused()
    page.keyboard.type("00AA0000000B")
    expect(page.get_by_label("Robot name")).to_have_value("PC-KEYS")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Job")).to_contain_text("Succeeded")
    job_id = int(page.url.rsplit("/", 1)[1])
    assert robot.package(job_id)["package"]["package_name"] == "keyboard-run"


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_every_view_fits_the_screen(server, start_robot, open_page, width, height):
    start_robot(server, "A-ROBOT-WITH-A-RATHER-LONG-NAME-01", "001AFFDB45C2")
    job = server.trigger("001AFFDB45C2", "A-ROBOT-WITH-A-RATHER-LONG-NAME-01", "a-package-name-that-is-long")["id"]
    page = open_page(server, width=width, height=height)
    for route, landmark in [
        ("#/robots", ("table", "Robots")),
        ("#/jobs", ("table", "Jobs")),
        (f"#/jobs/{job}", ("table", "History")),
        ("#/jobs/new", ("button", "Trigger")),
        ("#/schedules", ("heading", "Schedules")),
        ("#/events", ("heading", "Events")),
        ("#/webhooks", ("heading", "Webhooks")),
        ("#/robots/001AFFDB45C2", ("heading", "Robot 001AFFDB45C2")),
    ]:
        page.goto(f"{server.url}/ui/{route}")
        expect(page.get_by_role(landmark[0], name=landmark[1]).first).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{route} is {overflow}px wider than a {width}px screen"
