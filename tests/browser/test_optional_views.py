"""Events, webhooks and pools: shown when the server has their routes, and a clear message (or
no link) when it answers 404. Each test checks whichever the server in hand offers."""

import re

from playwright.sync_api import expect

from conftest import ApiError


def route_exists(server, path: str) -> bool:
    try:
        server.request("GET", path)
        return True
    except ApiError as error:
        return not (error.status == 404 and error.body.get("detail") == "no such route")


def test_the_events_view(server, start_robot, open_page):
    page = open_page(server)
    nav = page.get_by_role("navigation", name="Views")
    expect(nav.get_by_role("link", name="Robots")).to_be_visible()
    if not route_exists(server, "/api/events"):
        expect(page.get_by_role("status").filter(has_text="Refreshing every second")).to_be_visible()
        nav.get_by_role("link", name="Events").click()
        expect(page.get_by_text("No live event feed on this server.")).to_be_visible()
        expect(page.get_by_text("GET /api/events")).to_be_visible()
        return
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    nav.get_by_role("link", name="Events").click()
    start_robot(server, "PC-EVENTS", "00AA000000EE")
    events = page.get_by_role("table", name="Events")
    row = events.get_by_role("row").filter(has_text="robots/00AA000000EE").filter(has_text="robot.online")
    expect(row.first).to_be_visible()
    page.get_by_label("Type").fill("job.*")
    page.get_by_role("button", name="Filter").click()
    expect(events.get_by_role("row").filter(has_text="robot.online")).to_have_count(0)


def test_the_webhooks_view(server, open_page):
    page = open_page(server, "#/webhooks")
    if not route_exists(server, "/api/webhooks"):
        expect(page.get_by_text("No webhooks on this server.")).to_be_visible()
        return
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    page.get_by_label("URL").fill("http://127.0.0.1:9/hook")
    page.get_by_label("Event types").fill("job.failed, robot.*")
    page.get_by_label("Description").fill("chat channel")
    page.get_by_role("button", name="Add webhook").click()
    secret = page.get_by_label("Secret")
    expect(secret).to_have_value(re.compile(r"^whsec_"))
    row = page.get_by_role("table", name="Webhooks").get_by_role("row").filter(has_text="http://127.0.0.1:9/hook")
    expect(row).to_contain_text("job.failed, robot.*")
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)


def test_the_pools_link_only_when_the_server_has_pools(server, open_page):
    page = open_page(server)
    nav = page.get_by_role("navigation", name="Views")
    expect(nav.get_by_role("link", name="Robots")).to_be_visible()
    if not route_exists(server, "/api/pools"):
        expect(nav.get_by_role("link", name="Pools")).to_be_hidden()
        page.goto(f"{server.url}/ui/#/pools")
        expect(page.get_by_role("heading", name="No such view")).to_be_visible()
        return
    nav.get_by_role("link", name="Pools").click()
    expect(page.get_by_text("No pools yet")).to_be_visible()
