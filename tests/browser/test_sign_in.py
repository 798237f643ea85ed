"""With --api-token: the page asks once, keeps the token for the tab, sends it as a bearer."""

from playwright.sync_api import expect


def test_the_page_asks_for_the_token_once_per_tab(start_server, start_robot, open_page, browser):
    server = start_server("--api-token", "s3cret-token")
    start_robot(server, "PC-1", "00AA00000001")
    page = open_page(server)
    sent = []
    page.on("request", lambda request: sent.append((request.url, request.headers.get("authorization"))))

    token = page.get_by_label("API token")
    expect(token).to_be_visible()
    expect(token).to_have_attribute("type", "password")
    expect(page.get_by_role("navigation", name="Views")).to_be_hidden()
    expect(page.get_by_role("table", name="Robots")).to_have_count(0)

    token.fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").filter(has_text="the bearer token is not valid")).to_be_visible()
    expect(page.get_by_role("table", name="Robots")).to_have_count(0)

    page.get_by_label("API token").fill("s3cret-token")
    page.get_by_label("API token").press("Enter")
    row = page.get_by_role("table", name="Robots").get_by_role("row").filter(has_text="00AA00000001")
    expect(row).to_contain_text("online")
    expect(page.get_by_role("heading", name="Robots")).to_be_focused()
    api_calls = [auth for url, auth in sent if "/api/" in url]
    assert api_calls and api_calls[-1] == "Bearer s3cret-token"

    # The same tab keeps it across a reload; the token is not in the address or the page.
    page.reload()
    expect(row).to_contain_text("online")
    assert "s3cret" not in page.url
    assert "s3cret" not in page.content()

    # Another tab's session starts signed out.
    other = browser.new_context()
    try:
        fresh = other.new_page()
        fresh.goto(f"{server.url}/ui/")
        expect(fresh.get_by_label("API token")).to_be_visible()
    finally:
        other.close()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    page.reload()
    expect(page.get_by_label("API token")).to_be_visible()


def test_no_prompt_without_a_token(server, open_page):
    page = open_page(server)
    expect(page.get_by_role("navigation", name="Views")).to_be_visible()
    expect(page.get_by_label("API token")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
