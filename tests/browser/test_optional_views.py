"""Pools: shown when the server has their routes, and no link when it answers 404 (the test
checks whichever the server in hand offers)."""

from playwright.sync_api import expect

from conftest import ApiError


def route_exists(server, path: str) -> bool:
    try:
        server.request("GET", path)
        return True
    except ApiError as error:
        return not (error.status == 404 and error.body.get("detail") == "no such route")


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
