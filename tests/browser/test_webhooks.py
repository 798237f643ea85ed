"""The Webhooks view: adding a webhook (its secret shown once, the one that signs the
deliveries), its deliveries, a refusal beside its field, a webhook the server disabled shown
live and enabled again, deleting."""

import base64
import hashlib
import hmac
import json
import re

from playwright.sync_api import expect


def hook_row(page, url):
    return page.get_by_role("table", name="Webhooks").get_by_role("row").filter(has_text=url)


def signed_with(secret: str, delivery: dict) -> bool:
    """The Standard Webhooks signature check, as a receiver does it."""
    headers = delivery["headers"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + delivery["body"]
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(part == f"v1,{expected}" for part in headers["webhook-signature"].split())


def test_adding_a_webhook_shows_its_secret_once_and_its_deliveries(server, start_robot, receiver, open_page):
    robot = start_robot(server, "PC-HOOK", "00AA000000D1")
    page = open_page(server, "#/webhooks")
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("Event types").fill("job.succeeded, robot.offline")
    page.get_by_label("Description").fill("the operators' chat")
    page.get_by_role("button", name="Add webhook").click()

    secret_box = page.get_by_role("textbox", name="Secret")
    expect(secret_box).to_have_value(re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$"))
    expect(secret_box).to_be_focused()
    secret = secret_box.input_value()
    row = hook_row(page, receiver.url)
    expect(row).to_contain_text("job.succeeded, robot.offline")
    expect(row).to_contain_text("the operators' chat")
    expect(row).to_contain_text("active")
    [hook] = server.get("/api/webhooks")["items"]
    assert "secret" not in hook

    # The secret shown is the one that signs: a receiver checks a delivery with it.
    job = server.trigger("00AA000000D1", "PC-HOOK", "hooked")["id"]
    delivery = receiver.next(lambda d: json.loads(d["body"])["subject"] == f"jobs/{job}", "delivery of the job")
    event = json.loads(delivery["body"])
    assert event["type"] == "job.succeeded"
    assert signed_with(secret, delivery)

    # Shown once: stored and gone, it is nowhere on the page any more.
    page.get_by_role("button", name="I have stored it").click()
    expect(page.get_by_role("textbox", name="Secret")).to_have_count(0)
    assert secret not in page.content()

    # The webhook's page: its deliveries, as the API lists them, as they happen.
    row.get_by_role("link", name=str(hook["id"]), exact=True).click()
    expect(page.get_by_role("heading", name=f"Webhook {hook['id']}")).to_be_visible()
    deliveries = page.get_by_role("table", name="Deliveries")
    first = deliveries.get_by_role("row").filter(has_text=event["id"])
    expect(first).to_contain_text("delivered")
    expect(first).to_contain_text("HTTP 200")
    # The server lists a successful first attempt at most once a second (failures always): the
    # next event comes later than that.
    page.wait_for_timeout(1100)
    robot.stop()
    offline = receiver.next(lambda d: json.loads(d["body"])["type"] == "robot.offline", "delivery of robot.offline")
    offline_id = json.loads(offline["body"])["id"]
    expect(deliveries.get_by_role("row").nth(1)).to_contain_text(offline_id, timeout=5000)
    listed = server.get(f"/api/webhooks/{hook['id']}/deliveries")["items"]
    expect(deliveries.get_by_role("row")).to_have_count(len(listed) + 1)

    # Delivered events lead to the event archive.
    page.reload()
    assert secret not in page.content()
    first.get_by_role("link", name=event["id"]).click()
    expect(page.get_by_role("table", name="Event archive").get_by_role("row").nth(1)).to_contain_text(event["id"])

    page.get_by_role("navigation", name="Views").get_by_role("link", name="Webhooks").click()
    hook_row(page, receiver.url).get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Delete webhook {hook['id']}?")
    dialog.get_by_role("button", name="Delete").click()
    expect(hook_row(page, receiver.url)).to_have_count(0)
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    assert server.get("/api/webhooks")["items"] == []


def test_a_refused_webhook_shows_the_problem_beside_the_field(server, open_page):
    page = open_page(server, "#/webhooks")
    page.get_by_label("URL").fill("ftp://files.example/drop")
    page.get_by_label("Event types").fill("job.failed")
    page.get_by_role("button", name="Add webhook").click()
    url = page.get_by_label("URL")
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(url).to_have_accessible_description(re.compile(r"http"))
    expect(url).to_be_focused()
    expect(page.get_by_role("textbox", name="Secret")).to_have_count(0)
    assert server.get("/api/webhooks")["items"] == []


def test_a_disabled_webhook_shows_live_and_is_enabled_again(start_server, start_robot, receiver, open_page):
    server = start_server("--webhook-retry-for", "1s")
    robot = start_robot(server, "PC-HOOK", "00AA000000D2")
    receiver.status = 500
    hook = server.post("/api/webhooks", {"url": receiver.url, "types": ["job.*"], "description": "down"})
    page = open_page(server, "#/webhooks")
    row = hook_row(page, receiver.url)
    expect(row).to_contain_text("active")
    expect(row.get_by_role("button", name="Enable")).to_have_count(0)

    job = server.trigger("00AA000000D2", "PC-HOOK", "unheard")["id"]
    robot.package(job)
    # Failing for longer than --webhook-retry-for: disabled, and the page hears of it at once.
    server.wait_for(lambda: not server.get(f"/api/webhooks/{hook['id']}")["active"], "the webhook disabled", timeout=30)
    expect(row).to_contain_text("disabled", timeout=3000)
    reason = server.get(f"/api/webhooks/{hook['id']}")["disabled_reason"]
    assert reason
    expect(row).to_contain_text(reason)

    receiver.status = 200
    row.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("status").filter(has_text=f"Webhook {hook['id']} enabled.")).to_be_visible()
    expect(row).to_contain_text("active")
    expect(row.get_by_role("button", name="Enable")).to_have_count(0)
    assert server.get(f"/api/webhooks/{hook['id']}")["active"] is True
