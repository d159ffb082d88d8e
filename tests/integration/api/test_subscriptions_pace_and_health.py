"""A subscription's max_rps (create and PATCH) and its health (GET .../health) over HTTP, and the
event types it takes by default, against the real app, Postgres and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from tests.support.api import api_client
from tests.support.factories import ApiClient, new_client

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture(scope="module")
async def api(hook_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API of the webhook tests: subscriptions here point at a local (private) address."""
    async with api_client(hook_settings) as http:
        yield http


@pytest.fixture
async def alice(hook_settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> ApiClient:
    return await new_client(hook_settings, sessions)


async def create(api: httpx.AsyncClient, who: ApiClient, **body: Any) -> httpx.Response:
    return await api.post("/v1/subscriptions", json={"url": HOOK, **body}, headers=who.headers)


@pytest.mark.parametrize("max_rps", [1, 50, 1000, None])
async def test_max_rps_is_kept_and_shown(
    api: httpx.AsyncClient, alice: ApiClient, max_rps: int | None
) -> None:
    created = await create(api, alice, max_rps=max_rps)
    assert created.status_code == 201, created.text
    shown = await api.get(f"/v1/subscriptions/{created.json()['id']}", headers=alice.headers)
    assert shown.json()["max_rps"] == max_rps
    assert shown.json()["disabled_reason"] is None


@pytest.mark.parametrize("max_rps", [0, -1, 1001, 2.5, "5", True])
async def test_a_max_rps_out_of_its_bounds_or_not_a_whole_number_answers_422(
    api: httpx.AsyncClient, alice: ApiClient, max_rps: object
) -> None:
    created = await create(api, alice, max_rps=max_rps)
    assert created.status_code == 422
    assert "max_rps" in str(created.json()["errors"])
    sub = (await create(api, alice)).json()["id"]
    changed = await api.patch(
        f"/v1/subscriptions/{sub}", json={"max_rps": max_rps}, headers=alice.headers
    )
    assert changed.status_code == 422
    assert "max_rps" in str(changed.json()["errors"])


async def test_patch_sets_changes_and_removes_the_pace(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    sub = (await create(api, alice)).json()["id"]
    url = f"/v1/subscriptions/{sub}"
    assert (await api.patch(url, json={"max_rps": 10}, headers=alice.headers)).json()[
        "max_rps"
    ] == 10
    assert (await api.patch(url, json={"max_rps": 20}, headers=alice.headers)).json()[
        "max_rps"
    ] == 20
    # Another field leaves the pace alone; null removes it.
    kept = await api.patch(url, json={"description": "orders"}, headers=alice.headers)
    assert kept.json()["max_rps"] == 20
    removed = await api.patch(url, json={"max_rps": None}, headers=alice.headers)
    assert removed.json()["max_rps"] is None
    # Any other field set to null is still refused.
    refused = await api.patch(url, json={"description": None}, headers=alice.headers)
    assert refused.status_code == 422


async def test_a_subscription_takes_every_task_event_by_default_and_the_disable_when_named(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    default = (await create(api, alice)).json()
    assert default["event_types"] == ["task.completed", "task.expired", "task.failed"]
    named = (await create(api, alice, event_types=["subscription.disabled"])).json()
    assert named["event_types"] == ["subscription.disabled"]


async def test_a_new_subscriptions_health_has_no_attempts(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    sub = (await create(api, alice)).json()["id"]
    health = await api.get(f"/v1/subscriptions/{sub}/health", headers=alice.headers)
    assert health.status_code == 200
    assert health.json() == {
        "last_success_at": None,
        "failing_since": None,
        "failures_in_row": 0,
        "last_hour": {
            "attempts": 0,
            "succeeded": 0,
            "success_rate": None,
            "p95_latency_ms": None,
        },
    }


async def test_another_clients_subscription_has_no_health_to_show(
    api: httpx.AsyncClient,
    alice: ApiClient,
    hook_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bob = await new_client(hook_settings, sessions)
    sub = (await create(api, alice)).json()["id"]
    for who, path in ((bob, sub), (alice, "sub_unknown"), (alice, "not an id!")):
        answer = await api.get(f"/v1/subscriptions/{path}/health", headers=who.headers)
        assert answer.status_code == 404
        assert answer.json()["code"] == "NOT_FOUND"
