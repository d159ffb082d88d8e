"""A dead endpoint in a real browser (headless Chromium) against a running stack (the API over
HTTP, the engine delivering webhooks, a local receiver): it is disabled as failing, the
subscriptions page shows a banner with the reason, "Re-enable and catch up" sends what it missed
once each, its health shows the success, and its pace is set from its row."""

from __future__ import annotations

import secrets
from collections import Counter

import httpx
import pytest
from playwright.async_api import expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.sim.server import SimServer
from tests.support.api import bearer
from tests.support.browser import chromium, served_api
from tests.support.engine import running_engine
from tests.support.factories import client_and_key, emit_event
from tests.support.receivers import Receiver, Reply
from tests.support.settings import engine_settings

pytestmark = pytest.mark.slow


async def test_a_person_sees_a_failing_endpoint_re_enables_it_and_it_catches_up(
    fresh_sim: SimServer,
    database_url: str,
    redis_url: str,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Shortened: the retry after 0.4 s is the last of the schedule and comes after the window.
    settings = engine_settings(
        database_url,
        redis_url,
        fresh_sim.base_url,
        webhook_allow_private=True,
        webhook_timeout_s=1.0,
        webhook_retry_schedule=(0.4,),
        webhook_disable_after_s=0.3,
    )
    client_id, key = await client_and_key(settings, sessions, f"dead-{secrets.token_hex(4)}")
    path = f"/dead-{secrets.token_hex(4)}"
    receiver.script(path, default=Reply(status=503))
    async with running_engine(settings, deliver=True):
        with served_api(settings) as base:
            async with httpx.AsyncClient(base_url=base, headers=bearer(key)) as api:
                created = await api.post("/v1/subscriptions", json={"url": receiver.url(path)})
                assert created.status_code == 201, created.text
                subscription_id = created.json()["id"]
                failed = await emit_event(sessions, client_id)
                async with chromium() as browser:
                    page = await browser.new_page()
                    await page.goto(f"{base}/portal/sign-in")
                    await page.fill("#api_key", key)
                    await page.click("button:has-text('Sign in')")
                    await page.click("nav >> text=Subscriptions")
                    banner = page.locator(f'.subscription-disabled[data-id="{subscription_id}"]')
                    for _ in range(100):
                        if await banner.count():
                            break
                        await page.wait_for_timeout(200)
                        await page.reload()
                    await expect(banner).to_contain_text("disabled")
                    await expect(banner.locator(".reason")).to_contain_text(
                        "every attempt to it failed"
                    )
                    row = page.locator(f'tr.subscription[data-id="{subscription_id}"]')
                    await expect(row.locator(".disabled-reason")).to_have_text("failing")
                    await expect(row.locator(".failures")).to_contain_text("2 failures in a row")

                    # Missed while disabled, then fixed, re-enabled and caught up.
                    missed = [await emit_event(sessions, client_id) for _ in range(2)]
                    receiver.script(path, default=Reply(status=200))
                    await banner.locator("button:has-text('Re-enable and catch up')").click()
                    await expect(page.locator(".caught-up")).to_contain_text(
                        "3 deliveries go out now: 1 that had failed, 2 of events it missed"
                    )
                    await expect(banner).to_have_count(0)
                    await receiver.wait_for(2 + 3, path)
                    row = page.locator(f'tr.subscription[data-id="{subscription_id}"]')
                    for _ in range(100):
                        if "never" not in await row.locator(".last-success").inner_text():
                            break
                        await page.wait_for_timeout(200)
                        await page.reload()
                    await expect(row.locator(".failures")).to_contain_text("0 failures in a row")
                    await expect(row.locator(".last-hour")).to_contain_text("succeeded")

                    # Its pace, set from its row.
                    await row.locator("input.max-rps").fill("5")
                    await row.locator("button:has-text('Set')").click()
                    await expect(page.locator(".notice")).to_contain_text("Pace set")
                    shown = await api.get(f"/v1/subscriptions/{subscription_id}")
                    assert shown.json()["max_rps"] == 5
    accepted = Counter(r.headers["webhook-id"] for r in receiver.received(path)[2:])
    assert accepted == Counter(dict.fromkeys([failed, *missed], 1))
