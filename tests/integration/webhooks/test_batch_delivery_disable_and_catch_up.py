"""An endpoint dead for a (shortened) disable window is disabled as `failing`, with exactly one
`subscription.disabled` event in the feed, sent to the client's other subscriptions that name the
type; re-enabled and recovered, it gets every event it missed exactly once per webhook-id. The
scheduler's claim and the worker's batch are run by hand (`pump`) on a clock the test moves."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from service.config import Settings
from service.heartbeat import LeaseKeeper
from service.webhooks.batch_delivery import DeliveryService
from service.webhooks.encryption import cipher_for
from service.webhooks.sender import WebhookSender
from tests.support.api import FEED_SETTLE_S
from tests.support.deliveries import FakeClock, Pump
from tests.support.factories import (
    ApiClient,
    emit_event,
    insert_client,
    insert_subscription,
    new_client,
)
from tests.support.receivers import Receiver, Reply
from tests.support.settings import webhook_settings
from tests.support.waiting import wait_until_async

Sessions = async_sessionmaker[AsyncSession]

# Shortened: every attempt failing for 2 s (and one whole schedule of two attempts) disables.
DISABLE_AFTER_S = 2.0
RETRY_S = 0.5


def failing_disable_count() -> float:
    labels = {"reason": "failing"}
    return REGISTRY.get_sample_value("phonebridge_subscriptions_disabled_total", labels) or 0.0


@pytest.fixture
def short_settings(database_url: str, redis_url: str) -> Settings:
    return webhook_settings(
        database_url,
        redis_url,
        webhook_disable_after_s=DISABLE_AFTER_S,
        webhook_retry_schedule=(RETRY_S,),
    )


@pytest.fixture
async def short_pump(short_settings: Settings, sessions: Sessions) -> AsyncIterator[Pump]:
    settings = short_settings
    clock = FakeClock()
    sender = WebhookSender(settings.webhook_timeout_s, allow_private=True)
    leases = LeaseKeeper(sessions, settings.lease_s, clock=clock)
    service = DeliveryService(settings, sessions, sender, cipher_for(settings), leases, clock=clock)
    yield Pump(service, sessions, clock, settings)
    await service.close()


@pytest.fixture
async def client(hook_settings: Settings, sessions: Sessions) -> ApiClient:
    return await new_client(hook_settings, sessions)


async def subscribe(
    api: httpx.AsyncClient, who: ApiClient, url: str, **body: Any
) -> dict[str, Any]:
    response = await api.post("/v1/subscriptions", json={"url": url, **body}, headers=who.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def feed_events(api: httpx.AsyncClient, who: ApiClient) -> list[dict[str, Any]]:
    page = await api.get("/v1/events?limit=500", headers=who.headers)
    events: list[dict[str, Any]] = page.json()["data"]
    return events


async def in_feed(api: httpx.AsyncClient, who: ApiClient, event_id: str) -> bool:
    return any(event["id"] == event_id for event in await feed_events(api, who))


async def disable_events(
    api: httpx.AsyncClient, who: ApiClient, at_least: int
) -> list[dict[str, Any]]:
    """The client's subscription.disabled events, once the feed shows at least `at_least` (it
    shows an event once every transaction older than it has ended)."""

    async def enough() -> list[dict[str, Any]] | None:
        found = [e for e in await feed_events(api, who) if e["type"] == "subscription.disabled"]
        return found if len(found) >= at_least else None

    found: list[dict[str, Any]] = await wait_until_async(
        enough, timeout_s=FEED_SETTLE_S, what=f"{at_least} subscription.disabled events"
    )
    return found


async def shown(api: httpx.AsyncClient, who: ApiClient, subscription_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/subscriptions/{subscription_id}", headers=who.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_dead_endpoint_is_disabled_once_told_to_the_others_and_caught_up_exactly_once(
    api: httpx.AsyncClient,
    client: ApiClient,
    receiver: Receiver,
    short_pump: Pump,
    sessions: Sessions,
) -> None:
    pump = short_pump
    dead, ops, plain = (f"/{name}-{secrets.token_hex(4)}" for name in ("dead", "ops", "plain"))
    receiver.script(dead, default=Reply(status=500))
    failing = await subscribe(api, client, receiver.url(dead))
    operations = await subscribe(
        api, client, receiver.url(ops), event_types=["subscription.disabled", "task.completed"]
    )
    await subscribe(api, client, receiver.url(plain))

    # The first event's delivery fails its whole schedule (two attempts) within the window.
    first = await emit_event(sessions, client.id)
    await pump.once()
    pump.clock.advance(RETRY_S * 1.3)
    await pump.once()
    assert (await shown(api, client, failing["id"]))["enabled"] is True

    # Past the window, the next failed attempt disables it, and counts for the alert.
    failing_disables = failing_disable_count()
    pump.clock.advance(DISABLE_AFTER_S)
    second = await emit_event(sessions, client.id, "expired")
    await pump.once()
    disabled = await shown(api, client, failing["id"])
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "failing")
    assert failing_disable_count() >= failing_disables + 1
    health = (
        await api.get(f"/v1/subscriptions/{failing['id']}/health", headers=client.headers)
    ).json()
    assert health["failures_in_row"] == 3
    assert health["failing_since"] is not None
    assert health["last_hour"]["attempts"] == 3
    assert health["last_hour"]["success_rate"] == 0.0

    # One subscription.disabled event, in the feed, whose data is the subscription as shown.
    [notice] = await disable_events(api, client, at_least=1)
    assert notice["data"] == disabled
    # Sent to the subscription that names the type, once; not to the one that does not.
    await pump.once()
    await pump.once()
    told = [r for r in receiver.received(ops) if r.headers["webhook-id"] == notice["id"]]
    [request] = told
    payload = Webhook(operations["secret"]).verify(request.body, request.headers)
    assert payload == {
        "type": "subscription.disabled",
        "timestamp": notice["created_at"],
        "data": disabled,
    }
    assert all(r.headers["webhook-id"] != notice["id"] for r in receiver.received(plain))

    # More failures of the same endpoint (none are attempted now) make no second event.
    pump.clock.advance(DISABLE_AFTER_S)
    await pump.once()
    later = await emit_event(sessions, client.id)
    await wait_until_async(
        partial(in_feed, api, client, later), timeout_s=FEED_SETTLE_S, what="a later event"
    )
    assert len(await disable_events(api, client, at_least=0)) == 1

    # While it is disabled its events are kept but not sent to it.
    missed = [later, await emit_event(sessions, client.id)]
    before_catch_up = len(receiver.received(dead))
    await pump.once()
    assert len(receiver.received(dead)) == before_catch_up

    # Fixed, re-enabled and recovered since its trouble began: what failed goes again, what it
    # missed goes now, each counted in the answer.
    receiver.script(dead, default=Reply(status=200))
    enabled = await api.patch(
        f"/v1/subscriptions/{failing['id']}", json={"enabled": True}, headers=client.headers
    )
    assert (enabled.json()["enabled"], enabled.json()["disabled_reason"]) == (True, None)
    since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    recovered = await api.post(
        f"/v1/subscriptions/{failing['id']}/recover",
        json={"since": since.isoformat()},
        headers=client.headers,
    )
    assert recovered.status_code == 202
    assert recovered.json() == {"status": "accepted", "deliveries": 4, "recovered": 2, "missed": 2}
    await pump.once()
    sent = Counter(r.headers["webhook-id"] for r in receiver.received(dead)[before_catch_up:])
    assert sent == Counter({first: 1, second: 1, missed[0]: 1, missed[1]: 1})

    # Recovering the same window again sends nothing twice.
    again = await api.post(
        f"/v1/subscriptions/{failing['id']}/recover",
        json={"since": since.isoformat()},
        headers=client.headers,
    )
    assert again.json()["deliveries"] == 0
    await pump.once()
    assert len(receiver.received(dead)) == before_catch_up + 4
    health = (
        await api.get(f"/v1/subscriptions/{failing['id']}/health", headers=client.headers)
    ).json()
    assert health["failures_in_row"] == 0
    assert health["failing_since"] is None
    assert health["last_success_at"] is not None


async def test_attempts_phonebridge_could_not_sign_never_disable_the_endpoint(
    short_pump: Pump, sessions: Sessions
) -> None:
    # A secret that does not open with the key (as after a change of PHONEBRIDGE_SECRET_KEY).
    client_id = await insert_client(sessions)
    subscription = await insert_subscription(sessions, client_id, ["task.completed"])
    await emit_event(sessions, client_id)
    await short_pump.once()
    short_pump.clock.advance(RETRY_S * 1.3)
    await short_pump.once()
    short_pump.clock.advance(DISABLE_AFTER_S)
    await emit_event(sessions, client_id)
    await short_pump.once()

    async with sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT enabled, failing_since, failures_in_row FROM subscriptions"
                    " WHERE id = :s"
                ),
                {"s": subscription},
            )
        ).one()
        errors = (
            await session.execute(
                text("SELECT last_error FROM deliveries WHERE subscription_id = :s"),
                {"s": subscription},
            )
        ).scalars()
        assert all(error.startswith("cannot sign") for error in errors)
    assert (row.enabled, row.failing_since, row.failures_in_row) == (True, None, 0)
