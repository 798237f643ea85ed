"""Jobs: triggering from the form, cancel and force, refusals, and the reasons in plain words."""

import re
import time

from playwright.sync_api import expect

from conftest import ApiError

TOMORROW = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))


def job_row(page, job_id):
    return page.get_by_role("table", name="Jobs").get_by_role("row").filter(
        has=page.get_by_role("link", name=str(job_id), exact=True)
    )


def test_a_job_triggered_from_the_form_reaches_the_robot(server, start_robot, open_page):
    robot = start_robot(server, "LAPTOP-TAUNF8FD", "001AFFDB45C2")
    page = open_page(server)
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    page.get_by_role("link", name="Trigger a job").first.click()

    page.get_by_label("Package name").fill("package-x74s-eg")
    page.get_by_label("Package path").fill("cloudinary/studioPackages/pkg1-x74s.std")
    page.get_by_label("Robot address").fill("001AFFDB45C2")
    # The name comes from the robot's record.
    expect(page.get_by_label("Robot name")).to_have_value("LAPTOP-TAUNF8FD")
    page.get_by_role("button", name="Trigger").click()

    expect(page).to_have_url(re.compile(r"#/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    package = robot.package(job_id)
    assert package["package"]["package_name"] == "package-x74s-eg"
    assert package["package"]["path"] == "cloudinary/studioPackages/pkg1-x74s.std"
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_contain_text("Succeeded")
    expect(page.get_by_text("The robot reported success.")).to_be_visible()
    events = server.get(f"/api/jobs/{job_id}")["events"]
    history = page.get_by_role("table", name="History")
    expect(history.get_by_role("row")).to_have_count(len(events) + 1)
    expect(history.get_by_role("row").last).to_contain_text(events[-1]["reason"])

    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(job_row(page, job_id)).to_contain_text("Succeeded")
    expect(job_row(page, job_id)).to_contain_text("package-x74s-eg")


def test_cancel_and_force_from_the_list(server, start_robot, open_page):
    robot = start_robot(server, "PC-1", "00AA00000001")
    later = {"date": TOMORROW, "time": "09:00"}
    to_cancel = server.trigger("00AA00000001", "PC-1", "cancel-me", later)["id"]
    to_force = server.trigger("00AA00000001", "PC-1", "force-me", later)["id"]

    page = open_page(server, "#/jobs")
    row = job_row(page, to_cancel)
    expect(row).to_contain_text("Pending")
    expect(row).to_contain_text("Waiting for its time")
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_contain_text("Cancelled")
    expect(page.get_by_role("status").filter(has_text=f"Job {to_cancel} cancelled.")).to_be_visible()
    assert server.get(f"/api/jobs/{to_cancel}")["status"] == "Cancelled"
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)

    job_row(page, to_force).get_by_role("button", name="Force").click()
    robot.package(to_force)
    expect(job_row(page, to_force)).to_contain_text("Succeeded")


def test_a_refused_action_shows_the_servers_problem(server, start_robot, open_page):
    start_robot(server, "PC-1", "00AA00000001")
    job = server.trigger("00AA00000001", "PC-1", "twice", {"date": TOMORROW, "time": "09:00"})["id"]
    page = open_page(server, f"#/jobs/{job}")
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    # Someone else cancels it first, just before the page's request arrives (deterministically:
    # cancelled earlier, the live update could take the button away before the click): the
    # page's Cancel is then refused with 409.
    def someone_else_first(route):
        server.post(f"/api/jobs/{job}/cancel")
        route.continue_()

    page.route(f"**/api/jobs/{job}/cancel", someone_else_first)
    page.get_by_role("button", name="Cancel").click()
    alert = page.get_by_role("alert").filter(has_text="Refused")
    expect(alert).to_contain_text(f"job {job} is Cancelled: only a Pending job can be cancelled")


def test_a_refused_trigger_shows_the_detail_and_the_field_errors(server, start_robot, open_page):
    start_robot(server, "PC-1", "00AA00000001")
    page = open_page(server, "#/jobs/new")
    page.get_by_label("Package name").fill("../escape")
    page.get_by_label("Package path").fill("ok/pkg.std")
    page.get_by_label("Robot address").fill("00AA00000001")
    expect(page.get_by_label("Robot name")).to_have_value("PC-1")
    page.get_by_label("Run at").fill("2020-01-01T09:00")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Trigger").click()

    form_alert = page.locator("form [role=alert]").filter(has_text="failed validation")
    expect(form_alert).to_contain_text("2 fields failed validation")
    name = page.get_by_label("Package name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description(re.compile(r"safe file name"))
    run_at = page.get_by_label("Run at")
    expect(run_at).to_have_attribute("aria-invalid", "true")
    expect(run_at).to_have_accessible_description(re.compile(r"past"))
    assert server.get("/api/jobs")["items"] == []

    # A robot the server does not know: the 404's detail, beside the address.
    page.get_by_label("Package name").fill("fine-name")
    page.get_by_label("Run at").fill("")
    page.get_by_label("Robot address").fill("FFEEDDCCBBAA")
    page.get_by_label("Robot name").fill("GHOST")
    page.get_by_role("button", name="Trigger").click()
    address = page.get_by_label("Robot address")
    expect(address).to_have_accessible_description(re.compile(r"FFEEDDCCBBAA"))
    expect(page.get_by_label("Package name")).not_to_have_attribute("aria-invalid", "true")
    assert server.get("/api/jobs")["items"] == []


def test_why_a_job_waits_or_failed(server, start_robot, open_page):
    failing = start_robot(server, "PC-FAIL", "00AA000000FF", "--report", "failure")
    failed = server.trigger("00AA000000FF", "PC-FAIL", "will-fail")["id"]
    failing.wait_event(lambda e: e.get("event") == "reported" and e.get("job_id") == failed, "report")
    server.wait_for(lambda: server.get(f"/api/jobs/{failed}")["status"] == "Failed", "the failure")

    away = start_robot(server, "PC-AWAY", "00AA000000AA")
    away.stop()
    server.wait_for(lambda: not server.get("/api/robots/00AA000000AA")["online"], "robot offline")
    waiting = server.trigger("00AA000000AA", "PC-AWAY", "waits")["id"]

    page = open_page(server, "#/jobs")
    expect(job_row(page, failed)).to_contain_text("Failed")
    last_error = server.get(f"/api/jobs/{failed}")["last_error"]
    assert last_error
    expect(job_row(page, failed)).to_contain_text(f"Failed: {last_error}")
    expect(job_row(page, waiting)).to_contain_text("Due, robot offline since")

    page.get_by_role("link", name=str(waiting), exact=True).click()
    expect(page.get_by_role("heading", name=f"Job {waiting}")).to_contain_text("Pending")
    expect(page.get_by_text("Due, robot offline since")).to_be_visible()
    expect(page.get_by_text("it is sent when the robot connects")).to_be_visible()


def test_paging_and_filters_agree_with_the_api(server, start_robot, open_page):
    start_robot(server, "PC-1", "00AA00000001")
    later = {"date": TOMORROW, "time": "10:00"}
    ids = [server.trigger("00AA00000001", "PC-1", f"batch-{n}", later)["id"] for n in range(55)]
    server.post(f"/api/jobs/{ids[0]}/cancel")

    page = open_page(server, "#/jobs")
    table = page.get_by_role("table", name="Jobs")
    expect(table.get_by_role("row")).to_have_count(51)  # a heading row and 50 jobs
    expect(job_row(page, ids[-1])).to_be_visible()
    page.get_by_role("button", name="Next page").click()
    expect(table.get_by_role("row")).to_have_count(6)
    expect(job_row(page, ids[0])).to_contain_text("Cancelled")
    page.get_by_role("button", name="First page").click()
    expect(table.get_by_role("row")).to_have_count(51)

    page.get_by_label("Status").select_option("Cancelled")
    expect(page).to_have_url(re.compile(r"status=Cancelled"))
    expect(table.get_by_role("row")).to_have_count(2)
    expect(job_row(page, ids[0])).to_be_visible()
    assert [j["id"] for j in server.get("/api/jobs?status=Cancelled")["items"]] == [ids[0]]


def test_retry_appears_only_where_the_server_has_it(server, start_robot, open_page):
    start_robot(server, "PC-1", "00AA00000001")
    job = server.trigger("00AA00000001", "PC-1", "retry-me", {"date": TOMORROW, "time": "09:00"})["id"]
    server.post(f"/api/jobs/{job}/cancel")
    try:
        server.request("POST", "/api/jobs/999999/retry")
        has_retry = True
    except ApiError as error:
        has_retry = not (error.status == 404 and error.body.get("detail") == "no such route")
    page = open_page(server, f"#/jobs/{job}")
    expect(page.get_by_role("heading", name=f"Job {job}")).to_contain_text("Cancelled")
    if not has_retry:
        expect(page.get_by_role("button", name="Retry")).to_have_count(0)
        return
    page.get_by_role("button", name="Retry").click()
    expect(page).not_to_have_url(re.compile(rf"#/jobs/{job}$"))
    expect(page.get_by_text("Retry of", exact=True)).to_be_visible()
    retried = int(page.url.rsplit("/", 1)[1])
    assert server.get(f"/api/jobs/{retried}")["retry_of"] == job
    expect(page.get_by_role("heading", name=f"Job {retried}")).to_be_visible()
    # The new job links to its original, which is unchanged.
    page.get_by_role("link", name=str(job), exact=True).click()
    expect(page).to_have_url(re.compile(rf"#/jobs/{job}$"))
    expect(page.get_by_role("heading", name=f"Job {job}")).to_contain_text("Cancelled")


def test_retry_from_the_list_of_failed_jobs(server, start_robot, open_page):
    robot = start_robot(server, "PC-1", "00AA00000001", "--report", "failure")
    job = server.trigger("00AA00000001", "PC-1", "fails")["id"]
    server.wait_for(lambda: server.get(f"/api/jobs/{job}")["status"] == "Failed", "the job failed")
    page = open_page(server, "#/jobs?status=Failed")
    row = page.get_by_role("table", name="Jobs").get_by_role("row").filter(has_text="fails")
    expect(row).to_contain_text("Failed")
    # Only finished jobs offer Retry.
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    row.get_by_role("button", name="Retry").click()
    expect(page.get_by_text("Retry of", exact=True)).to_be_visible()
    retried = int(page.url.rsplit("/", 1)[1])
    robot.package(retried)
