"""The portal in a real browser (headless Chromium) against a running stack: the API over HTTP,
the polling engine, the upstream simulator and a local webhook receiver."""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from service.sim.server import SimServer
from service.store.db import transaction
from tests.support.api import bearer
from tests.support.browser import chromium, served_api
from tests.support.checks import PHONE, PHONE_MASKED
from tests.support.engine import running_engine
from tests.support.factories import client_and_key, new_key
from tests.support.receivers import Receiver, Reply
from tests.support.settings import engine_settings, webhook_settings

pytestmark = pytest.mark.slow

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/portal/sign-in")
    await page.fill("#api_key", key)
    await page.click("button:has-text('Sign in')")
    await expect(page.locator("h1")).to_have_text("Overview")


async def shown_secret(page: Page) -> str:
    text = await page.locator(".secret-value").inner_text()
    assert SECRET.fullmatch(text), text
    return text


async def test_a_person_finds_a_task_redelivers_and_manages_subscriptions(
    fresh_sim: SimServer, database_url: str, redis_url: str, receiver: Receiver
) -> None:
    settings = engine_settings(
        database_url,
        redis_url,
        fresh_sim.base_url,
        webhook_allow_private=True,
        webhook_timeout_s=1.0,
        webhook_retry_schedule=(0.2,),
    )
    key = await new_key(settings)
    task_id = f"sim-ring-2-{secrets.token_hex(4)}"
    receiver.script("/down", default=Reply(status=500))
    fresh_sim.control.configure(submit_script="ring-1")
    async with running_engine(settings, deliver=True):
        with served_api(settings) as base:
            async with httpx.AsyncClient(base_url=base, headers=bearer(key)) as api:
                created = await api.post("/v1/subscriptions", json={"url": receiver.url("/down")})
                assert created.status_code == 201, created.text
                registered = await api.post("/v1/tasks", json={"task_id": task_id})
                assert registered.status_code == 201
            async with chromium() as browser:
                page = await browser.new_page()
                await sign_in(page, base, key)

                # Find the task and read its story: the polls, the result, the failed delivery.
                await page.click("nav >> text=Tasks")
                await page.fill("#find", task_id)
                await page.click("button:has-text('Open')")
                await expect(page.locator("h1")).to_contain_text(task_id)
                for _ in range(100):
                    if await page.locator(".delivery-failed").count():
                        break
                    await page.wait_for_timeout(200)
                    await page.reload()
                await expect(page.locator(".timeline")).to_contain_text("poll: PENDING")
                await expect(page.locator(".timeline")).to_contain_text("completed")
                await expect(page.locator(".delivery-failed")).to_be_visible()
                failed_attempts = await page.locator(".kind-attempt.bad").count()
                assert failed_attempts == 2

                # Redeliver once the receiver is back: a new, successful attempt appears.
                receiver.script("/down", default=Reply(status=200))
                await page.click("button:has-text('Redeliver')")
                await expect(page.locator(".notice")).to_contain_text("goes out again")
                for _ in range(100):
                    if await page.locator(".kind-attempt.ok").count():
                        break
                    await page.wait_for_timeout(200)
                    await page.reload()
                await expect(page.locator(".kind-attempt.ok")).to_contain_text("200")

                # A new subscription, and a test event that the receiver verifies.
                await page.click("nav >> text=Subscriptions")
                await page.fill("#url", receiver.url("/test"))
                await page.fill("#description", "browser test")
                await page.click("button:has-text('Create')")
                secret = await shown_secret(page)
                row = page.locator("tr.subscription", has_text="/test")
                await row.locator("button:has-text('Send test event')").click()
                await expect(page.locator(".notice")).to_contain_text("Test event sent")
                row = page.locator("tr.subscription", has_text="/test")
                await expect(row.locator(".last-test")).to_contain_text("HTTP 200")
                [test_request] = receiver.received("/test")
                payload = Webhook(secret).verify(test_request.body, test_request.headers)
                assert payload["type"] == "webhook.test"
                assert payload["data"]["test"] is True

                # Rotate, then reveal: the secret shown is the new one.
                await row.locator("button:has-text('Rotate secret')").click()
                rotated = await shown_secret(page)
                assert rotated != secret
                row = page.locator("tr.subscription", has_text="/test")
                await row.locator("button:has-text('Reveal secret')").click()
                assert await shown_secret(page) == rotated

                # Submit a check with the simulator and land on its timeline: masked, submitted.
                await page.click("nav >> text=Submit a check")
                await page.fill("#phone_number", PHONE)
                await page.fill("#metadata", '{"order": 42}')
                await page.click("button:has-text('Submit check')")
                await expect(page.locator("h1")).to_contain_text("sim-ring-1-")
                await expect(page.locator(".notice")).to_contain_text("Check submitted")
                await expect(page.locator(".source")).to_have_text("submitted")
                await expect(page.locator(".masked-number")).to_have_text(PHONE_MASKED)
                await expect(page.locator(".timeline")).to_contain_text(
                    f"by phonebridge, number {PHONE_MASKED}"
                )
                assert PHONE not in await page.content()
                for _ in range(100):
                    if await page.locator(".kind-final").count():
                        break
                    await page.wait_for_timeout(200)
                    await page.reload()
                await expect(page.locator(".kind-final")).to_contain_text("phone_status ring")

                # Sign out: the portal refuses the browser until it signs in again.
                await page.click("button:has-text('Sign out')")
                await expect(page.locator(".notice")).to_contain_text("Signed out")
                await page.goto(f"{base}/portal/tasks/{task_id}")
                await expect(page).to_have_url(f"{base}/portal/sign-in")


async def test_a_person_reads_each_results_verdict_and_the_overview_counts_them(
    database_url: str, redis_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = webhook_settings(database_url, redis_url)
    client_id, key = await client_and_key(settings, sessions, f"verdicts-{secrets.token_hex(4)}")
    statuses = {"T-live-1": "ring", "T-live-2": "busy", "T-dead": "empty", "T-odd": "voicemail"}
    with served_api(settings) as base:
        async with httpx.AsyncClient(base_url=base, headers=bearer(key)) as api:
            for task_id in statuses:
                registered = await api.post("/v1/tasks", json={"task_id": task_id})
                assert registered.status_code == 201, registered.text
        async with transaction(sessions) as session:
            for task_id, phone_status in statuses.items():
                await session.execute(
                    text(
                        "UPDATE tasks SET state = 'completed', completed_at = now(),"
                        " next_poll_at = NULL, result = jsonb_build_object("
                        "'phone_number', '0062****', 'phone_status', CAST(:s AS text))"
                        " WHERE client_id = :c AND task_id = :t"
                    ),
                    {"c": client_id, "t": task_id, "s": phone_status},
                )
        async with chromium() as browser:
            page = await browser.new_page()
            await sign_in(page, base, key)

            # The overview counts the answers of the last hours by verdict.
            chart = page.locator("figure.chart", has_text="by verdict")
            await expect(chart.locator(".legend")).to_have_text(
                re.compile(r"live\s*unreachable\s*dead\s*retry\s*no verdict")
            )
            bars = await chart.locator("rect title").all_text_contents()
            assert sorted(re.sub(r"^\d\d:00 ", "", bar) for bar in bars) == [
                "dead: 1 tasks",
                "live: 2 tasks",
                "no verdict: 1 tasks",
            ]

            # The list shows each result's verdict beside its status.
            await page.click("nav >> text=Tasks")
            row = page.locator("tr", has_text="T-live-2")
            await expect(row.locator(".verdict")).to_have_text("live")
            await expect(row.locator(".phone-status")).to_have_text("busy")
            row = page.locator("tr", has_text="T-odd")
            await expect(row.locator(".verdict")).to_have_text("no verdict")
            await expect(row.locator(".phone-status")).to_have_text("voicemail")

            # So do the task's page and its timeline.
            await page.click("a:has-text('T-dead')")
            await expect(page.locator("dd.result .verdict")).to_have_text("dead")
            await expect(page.locator("dd.result .phone-status")).to_have_text("empty")
            await expect(page.locator(".kind-final")).to_contain_text(
                "phone_status empty, verdict dead"
            )
