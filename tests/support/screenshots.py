"""Screenshots of the portal's main pages for the README (`scripts/screenshots`): a scratch
database, the simulator, a receiver that refuses one subscription's webhooks, the engine and the
API, a few sample tasks, then headless Chromium sends a test event to each subscription, submits a
check from the form, makes a draft and a started check job, and photographs each page into docs/."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import orjson

from service.sim.server import SimServer
from service.sim.state import SimOptions
from service.store.migrate import upgrade_to_head
from tests.support.api import bearer
from tests.support.browser import chromium, served_api
from tests.support.checks import PHONE
from tests.support.databases import claimed_redis_database, scratch_database
from tests.support.engine import running_engine
from tests.support.factories import new_key
from tests.support.jobs import csv_body, mx_number
from tests.support.receivers import Reply, running_receiver
from tests.support.settings import engine_settings
from tests.support.upstream import API_ID, API_SECRET

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = {
    "portal-overview.png": "/portal",
    "portal-tasks.png": "/portal/tasks",
    "portal-deliveries.png": "/portal/deliveries",
    "portal-subscriptions.png": "/portal/subscriptions",
    "portal-jobs.png": "/portal/jobs",
}
SETTLE_S = 12.0
CHECK_SETTLE_S = 4.0


# The sample jobs' rows: made-up Mexico City numbers (neither Mexico nor Colombia sets numbers
# aside for fiction, as North America does 555-0100 to 555-0199; a 555-0100 here is read as a
# Brazilian +55 number), one repeated, and one line that is no number at all (rejected).
SAMPLE_JOB_REJECTED = ("call me", "loan-10")
SAMPLE_JOB_ROWS = [(mx_number(n), f"loan-{n}") for n in range(1, 10)] + [
    (mx_number(3), "loan-3-again"),
    SAMPLE_JOB_REJECTED,
]


async def sample_jobs(api: httpx.AsyncClient) -> str:
    """A draft and a started job of SAMPLE_JOB_ROWS, as CSV; the started one's id."""
    ids = []
    for name, start in [("december book (draft)", "false"), ("november book", "true")]:
        created = await api.post(
            f"/v1/check-jobs?name={name}&start={start}",
            content=csv_body(SAMPLE_JOB_ROWS),
            headers={"Content-Type": "text/csv"},
        )
        ids.append(created.json()["id"])
    return str(ids[-1])


async def photograph() -> None:
    with (
        claimed_redis_database() as redis_url,
        scratch_database("portal_screens") as database_url,
        SimServer(SimOptions(api_id=API_ID, api_secret=API_SECRET)) as sim,
        running_receiver() as receiver,
    ):
        upgrade_to_head(database_url)
        settings = engine_settings(
            database_url,
            redis_url,
            sim.base_url,
            webhook_allow_private=True,
            webhook_timeout_s=1.0,
            webhook_retry_schedule=(0.3,),
            poll_initial_s=0.5,
            poll_max_s=1.5,
            # The endpoint that answers 503 is disabled as failing by the time of the photos.
            webhook_disable_after_s=2.0,
        )
        receiver.script("/down", default=Reply(status=503))
        sim.control.configure(submit_script="ring-2")
        key = await new_key(settings)
        tag = secrets.token_hex(2)
        tasks = [f"sim-ring-3-{tag}", f"sim-busy-0-{tag}", f"sim-invalid-{tag}"]
        tasks += [f"sim-turned_off-{n}-{tag}" for n in range(1, 6)]
        tasks += [f"sim-never-{tag}", f"sim-ring-50-{tag}"]
        async with running_engine(settings, deliver=True):
            with served_api(settings) as base:
                async with httpx.AsyncClient(base_url=base, headers=bearer(key)) as api:
                    for url, description, max_rps in [
                        (receiver.url("/hooks"), "orders service", 20),
                        (receiver.url("/down"), "legacy endpoint (answers 503)", None),
                    ]:
                        await api.post(
                            "/v1/subscriptions",
                            json={"url": url, "description": description, "max_rps": max_rps},
                        )
                    for task_id in tasks:
                        await api.post(
                            "/v1/tasks", json={"task_id": task_id, "metadata": {"order": tag}}
                        )
                    job_id = await sample_jobs(api)
                await asyncio.sleep(SETTLE_S)
                async with chromium() as browser:
                    page = await browser.new_page(viewport={"width": 1200, "height": 900})
                    await page.goto(f"{base}/portal/sign-in")
                    await page.fill("#api_key", key)
                    await page.click("button:has-text('Sign in')")
                    # A test event to each subscription, so their rows show a last test.
                    await page.goto(f"{base}/portal/subscriptions")
                    for button in await page.locator("button:has-text('Send test event')").all():
                        await button.click()
                    # A check submitted from the form, photographed filled in, then its timeline.
                    await page.goto(f"{base}/portal/checks/new")
                    await page.fill("#phone_number", PHONE)
                    await page.fill("#metadata", orjson.dumps({"order": tag}).decode())
                    await page.screenshot(path=str(DOCS / "portal-check.png"), full_page=True)
                    print("docs/portal-check.png")
                    await page.click("button:has-text('Submit check')")
                    submitted = page.url.removeprefix(base).split("?")[0]
                    await asyncio.sleep(CHECK_SETTLE_S)
                    pages = {
                        **PAGES,
                        "portal-timeline.png": f"/portal/tasks/{tasks[0]}",
                        "portal-check-timeline.png": submitted,
                        "portal-job.png": f"/portal/jobs/{job_id}",
                    }
                    for name, path in pages.items():
                        await page.goto(f"{base}{path}")
                        await page.screenshot(path=str(DOCS / name), full_page=True)
                        print(f"docs/{name}")


if __name__ == "__main__":
    asyncio.run(photograph())
