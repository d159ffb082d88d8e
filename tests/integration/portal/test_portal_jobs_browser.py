"""Check jobs in a real browser (headless Chromium) against the API over HTTP: a person uploads a
CSV as a draft, reads its cost, starts, pauses, resumes and cancels it and downloads its results;
then, with the engine and the simulator running, watches a started job's page refresh itself
(its <meta> refresh, under the portal's Content-Security-Policy) until the job is completed."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from playwright.async_api import FilePayload, Page, expect

from service.sim.server import SimServer
from tests.support.browser import chromium, served_api
from tests.support.engine import running_engine
from tests.support.factories import new_key
from tests.support.jobs import csv_body, mx_number
from tests.support.settings import engine_settings, webhook_settings

pytestmark = pytest.mark.slow


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/portal/sign-in")
    await page.fill("#api_key", key)
    await page.click("button:has-text('Sign in')")
    await expect(page.locator("h1")).to_have_text("Overview")


async def upload(page: Page, body: bytes, name: str, *, start: bool) -> None:
    await page.click("nav >> text=Jobs")
    await expect(page.locator("h1")).to_have_text("Check jobs")
    csv_file: FilePayload = {"name": "book.csv", "mimeType": "text/csv", "buffer": body}
    await page.set_input_files("#file", files=[csv_file])
    await page.fill("#name", name)
    await page.check(f"input[name=start][value={'true' if start else 'false'}]")
    await page.click("button:has-text('Upload')")


async def download_results(page: Page, tmp_path: Path) -> list[dict[str, str]]:
    async with page.expect_download() as download_info:
        await page.click("a:has-text('Download results CSV')")
    download = await download_info.value
    assert download.suggested_filename.endswith("-results.csv")
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    return list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))


async def test_a_person_uploads_a_draft_reads_its_cost_moves_it_and_downloads_results(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = webhook_settings(database_url, redis_url)
    key = await new_key(settings)
    rows = [(mx_number(1), "a"), ("not a number", "b"), (mx_number(2), "c"), (mx_number(1), "d")]
    with served_api(settings) as base:
        async with chromium() as browser:
            page = await browser.new_page(accept_downloads=True)
            await sign_in(page, base, key)

            # A CSV without a phone_number column is refused, naming what is wrong.
            await upload(page, b"number\r\n+52 55 0000 0001\r\n", "wrong", start=False)
            await expect(page.locator(".error")).to_contain_text("no phone_number column")

            # The draft: its cost, and only Start and Cancel to do.
            await upload(page, csv_body(rows), "november book", start=False)
            await expect(page.locator(".notice")).to_contain_text("Draft saved")
            await expect(page.locator(".to-submit")).to_have_text("2")
            await expect(page.locator(".count-rejected")).to_have_text("1")
            await expect(page.locator(".count-duplicates")).to_have_text("1")
            await expect(page.locator("table.rejections")).to_contain_text("b")
            assert await page.locator("meta[http-equiv=refresh]").count() == 0
            await expect(page.locator(".job-moves button")).to_have_text(["Start", "Cancel"])
            job_url = page.url.split("?")[0]

            # Started: queued, a progress bar, and a page that refreshes itself.
            await page.click("button:has-text('Start')")
            await expect(page.locator(".notice")).to_contain_text("Job started")
            await expect(page.locator(".job-state")).to_have_text("queued")
            await expect(page.locator("progress.job-progress")).to_have_count(1)
            await expect(page.locator(".refreshing")).to_be_visible()
            assert await page.locator("meta[http-equiv=refresh]").count() == 1

            await page.click("button:has-text('Pause')")
            await expect(page.locator(".notice")).to_contain_text("Job paused")
            await expect(page.locator(".job-state")).to_have_text("paused (client)")
            await page.click("button:has-text('Resume')")
            await expect(page.locator(".job-state")).to_have_text("running")
            await page.click("button:has-text('Cancel')")
            await expect(page.locator(".notice")).to_contain_text("Job cancelled")
            await expect(page.locator(".job-state")).to_have_text("cancelled")
            await expect(page.locator(".job-moves")).to_have_count(0)

            results = await download_results(page, tmp_path)
            assert [(row["line"], row["reference"], row["state"]) for row in results] == [
                ("1", "a", "not_submitted"),
                ("3", "c", "not_submitted"),
                ("4", "d", "not_submitted"),
            ]

            # The list shows it, with its bar.
            await page.click("nav >> text=Jobs")
            row = page.locator("tr.job", has_text="november book")
            await expect(row.locator(".pill")).to_have_text("cancelled")
            await expect(row.locator("progress")).to_have_count(1)
            await row.locator("a").click()
            assert page.url == job_url


@pytest.mark.usefixtures("flush_redis")
async def test_a_started_jobs_page_refreshes_itself_until_the_job_is_completed(
    fresh_sim: SimServer, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = engine_settings(database_url, redis_url, fresh_sim.base_url)
    fresh_sim.control.configure(submit_script="ring-1")
    key = await new_key(settings)
    rows = [(mx_number(21), "a"), (mx_number(22), "b"), (mx_number(21), "a-again")]
    async with running_engine(settings):
        with served_api(settings) as base:
            async with chromium() as browser:
                page = await browser.new_page(accept_downloads=True)
                await sign_in(page, base, key)
                await upload(page, csv_body(rows), "live book", start=True)
                await expect(page.locator(".notice")).to_contain_text("Job created")
                # Its first answer is still some polls away: the page it lands on refreshes.
                assert await page.locator("meta[http-equiv=refresh]").count() == 1
                # No reload here: the page's own <meta> refresh brings each new state (and drops
                # the notice, which only the redirect named).
                await expect(page.locator(".job-state")).to_have_text("completed", timeout=30_000)
                assert await page.locator("meta[http-equiv=refresh]").count() == 0
                await expect(page.locator(".count-completed")).to_have_text("2")
                await expect(page.locator(".by-verdict")).to_contain_text("live 3")
                await expect(page.locator(".progress-text")).to_contain_text("2 of 2")
                assert await page.locator(".notice").count() == 0

                results = await download_results(page, tmp_path)
                assert [(row["reference"], row["verdict"]) for row in results] == [
                    ("a", "live"),
                    ("b", "live"),
                    ("a-again", "live"),
                ]
