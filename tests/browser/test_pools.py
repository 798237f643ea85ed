"""Pools on the page (pools.md, dashboard.md): a robot's pools set on its page, the Pools table,
a job triggered for a pool from the form reaching the pool's robot, and the jobs filter by
pool."""

import re

from playwright.sync_api import expect


def test_a_robots_pools_the_pools_table_and_a_pool_job_from_the_form(server, start_robot, open_page):
    robot = start_robot(server, "LAPTOP-FIN-1", "00AA00000011")
    page = open_page(server, "#/robots/00AA00000011")
    page.get_by_role("textbox", name="Pools").fill("finance, night")
    page.get_by_role("button", name="Save pools").click()
    server.wait_for(lambda: server.get("/api/robots/00AA00000011")["pools"] == ["finance", "night"], "pools saved")

    page.get_by_role("navigation", name="Views").get_by_role("link", name="Pools").click()
    pools = page.get_by_role("table", name="Pools")
    row = pools.get_by_role("row").filter(has_text="finance")
    expect(row).to_contain_text("1")
    expect(pools.get_by_role("row").filter(has_text="night")).to_be_visible()

    page.get_by_role("navigation", name="Views").get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_role("link", name="Trigger a job").first.click()
    page.get_by_label("Package name").fill("invoice-run")
    page.get_by_label("Package path").fill("studio/invoice-run.std")
    page.get_by_label("Pool").fill("finance")
    page.get_by_role("button", name="Trigger").click()

    expect(page).to_have_url(re.compile(r"#/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    package = robot.package(job_id)
    assert package["package"]["package_name"] == "invoice-run"
    job = server.get(f"/api/jobs/{job_id}")
    assert job["pool"] == "finance"
    assert job["robot_address"] == "00AA00000011"

    page.goto(f"{server.url}/ui/#/jobs?pool=finance")
    expect(page.get_by_role("table", name="Jobs").get_by_role("link", name=str(job_id), exact=True)).to_be_visible()
    page.goto(f"{server.url}/ui/#/jobs?pool=night")
    expect(page.get_by_role("table", name="Jobs").get_by_role("link", name=str(job_id), exact=True)).to_have_count(0)
