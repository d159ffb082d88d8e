"""The portal's subscriptions page and an endpoint's health: the pace (max rps) on the create
form and per row, each endpoint's health, and a disabled subscription's banner with its reason
and the re-enable-and-catch-up action, all through the same feature functions as REST."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.states import DisabledReason
from service.store.db import transaction
from service.store.subscriptions import disable_subscription
from tests.support.api import bearer
from tests.support.factories import emit_event
from tests.support.portal import page_csrf

Sessions = async_sessionmaker[AsyncSession]


async def subscribe(api: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    body.setdefault("url", f"http://127.0.0.1:9/{secrets.token_hex(4)}")
    created = await api.post("/v1/subscriptions", json=body, headers=bearer(key))
    assert created.status_code == 201, created.text
    subscription: dict[str, Any] = created.json()
    return subscription


async def shown(api: httpx.AsyncClient, key: str, subscription_id: str) -> dict[str, Any]:
    answer = await api.get(f"/v1/subscriptions/{subscription_id}", headers=bearer(key))
    subscription: dict[str, Any] = answer.json()
    return subscription


def row_of(html: str, subscription_id: str) -> str:
    match = re.search(rf'<tr class="subscription" id="{subscription_id}".*?</tr>', html, re.S)
    assert match is not None, f"no row for {subscription_id}"
    return match.group(0)


def banner_of(html: str, subscription_id: str) -> str | None:
    match = re.search(
        rf'<div class="banner subscription-disabled" role="alert" data-id="{subscription_id}">'
        r".*?</div>",
        html,
        re.S,
    )
    return None if match is None else match.group(0)


async def client_id_of(sessions: Sessions, subscription_id: str) -> tuple[int, int]:
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT client_id, id FROM subscriptions WHERE public_id = :p"),
                {"p": subscription_id},
            )
        ).one()
    return int(row.client_id), int(row.id)


async def test_a_subscription_is_created_with_a_pace_and_a_bad_one_is_refused(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str
) -> None:
    csrf = await page_csrf(person, "/portal/subscriptions")
    url = f"http://127.0.0.1:9/{secrets.token_hex(4)}"
    for bad in ("0", "1001", "fast", "2.5"):
        refused = await person.post(
            "/portal/subscriptions", data={"csrf": csrf, "url": url, "max_rps": bad}
        )
        assert refused.status_code == 422
        assert "max rps must be a whole number from 1 to 1000" in refused.text
    assert (await api.get("/v1/subscriptions", headers=bearer(key))).json()["data"] == []

    created = await person.post(
        "/portal/subscriptions", data={"csrf": csrf, "url": url, "max_rps": "25"}
    )
    assert created.status_code == 200
    [subscription] = (await api.get("/v1/subscriptions", headers=bearer(key))).json()["data"]
    assert subscription["max_rps"] == 25
    assert 'value="25"' in row_of(created.text, subscription["id"])


async def test_a_rows_pace_is_set_changed_and_removed(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str
) -> None:
    subscription = await subscribe(api, key)
    csrf = await page_csrf(person, "/portal/subscriptions")
    pace = f"/portal/subscriptions/{subscription['id']}/pace"

    set_ = await person.post(pace, data={"csrf": csrf, "max_rps": "10"})
    assert set_.status_code == 303
    assert set_.headers["location"].startswith("/portal/subscriptions?notice=paced")
    assert (await shown(api, key, subscription["id"]))["max_rps"] == 10
    refused = await person.post(pace, data={"csrf": csrf, "max_rps": "-3"})
    assert refused.status_code == 422
    assert (await shown(api, key, subscription["id"]))["max_rps"] == 10
    removed = await person.post(pace, data={"csrf": csrf, "max_rps": ""})
    assert removed.status_code == 303
    assert (await shown(api, key, subscription["id"]))["max_rps"] is None


async def test_each_row_shows_its_endpoints_health(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str
) -> None:
    subscription = await subscribe(api, key)
    page = await person.get("/portal/subscriptions")
    row = row_of(page.text, subscription["id"])
    assert "last success: never" in row
    assert "0 failures in a row" in row
    assert "last hour: no attempts" in row


async def test_a_disabled_subscription_has_a_banner_and_is_re_enabled_and_caught_up(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, sessions: Sessions
) -> None:
    subscription = await subscribe(api, key)
    healthy = await subscribe(api, key)
    client_id, pk = await client_id_of(sessions, subscription["id"])
    failing_since = datetime.now(UTC) - timedelta(days=5, minutes=1)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE subscriptions SET failing_since = :at WHERE id = :s"),
            {"at": failing_since, "s": pk},
        )
        await disable_subscription(session, pk, DisabledReason.FAILING, datetime.now(UTC))
    missed = [await emit_event(sessions, client_id) for _ in range(2)]

    page = await person.get("/portal/subscriptions")
    banner = banner_of(page.text, subscription["id"])
    assert banner is not None
    assert "every attempt to it failed from" in banner
    assert failing_since.strftime("%Y-%m-%d %H:%M:%S") in banner
    assert "Re-enable and catch up" in banner
    assert banner_of(page.text, healthy["id"]) is None

    csrf = await page_csrf(person, "/portal/subscriptions")
    caught_up = await person.post(
        f"/portal/subscriptions/{subscription['id']}/catch-up", data={"csrf": csrf}
    )

    assert caught_up.status_code == 200
    assert "is enabled again; <strong>2</strong> deliveries go out now" in caught_up.text
    assert "2 of events it missed while disabled" in caught_up.text
    assert banner_of(caught_up.text, subscription["id"]) is None
    enabled = await shown(api, key, subscription["id"])
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    for event_id in missed:
        deliveries = await api.get(f"/v1/events/{event_id}/deliveries", headers=bearer(key))
        assert subscription["id"] in {d["subscription_id"] for d in deliveries.json()["data"]}

    # Posted twice (a reload), it catches up nothing more.
    again = await person.post(
        f"/portal/subscriptions/{subscription['id']}/catch-up", data={"csrf": csrf}
    )
    assert "<strong>0</strong> deliveries go out now" in again.text
