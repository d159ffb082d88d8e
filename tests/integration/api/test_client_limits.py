"""Per-client limits at intake (calls per second, pending tasks), the RateLimit headers, the
fallback that keeps intake working without Redis, and what a key's use leaves behind
(`last_used_at`, at most once a minute). Limits are set per client, as `phonebridge api-key
limits` sets them; the settings' defaults are off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from service.api.app import create_app
from service.api.client_limits import KEY_PREFIX
from service.config import Settings
from service.features.keys import add_key, list_keys
from service.run.processes import free_port
from tests.support.api import asgi_client, bearer
from tests.support.factories import limited_key, new_key
from tests.support.settings import make_settings

RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


async def at_the_start_of_a_second() -> None:
    await asyncio.sleep(1.02 - time.time() % 1.0)


async def test_calls_above_the_rate_answer_429_with_retry_after_and_headers(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    key, _ = await limited_key(settings, max_rps=3)
    await at_the_start_of_a_second()
    answers = [await api.get("/v1/tasks", headers=bearer(key)) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0", "0"]
    refused = answers[3]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    assert "3 calls a second" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "1"
    assert all(a.headers["ratelimit-limit"] == "3" for a in answers)
    assert all(a.headers["ratelimit-reset"] == "1" for a in answers)


async def test_every_v1_answer_carries_the_headers_while_a_limit_is_on_and_none_when_off(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    limited, _ = await limited_key(settings, max_rps=1000)
    unlimited = await new_key(settings)
    for path in ("/v1/tasks", "/v1/tasks/nope", "/v1/subscriptions", "/v1/events/evt_x"):
        answer = await api.get(path, headers=bearer(limited))
        assert all(name in answer.headers for name in RATE_HEADERS), (path, answer.headers)
        answer = await api.get(path, headers=bearer(unlimited))
        assert not any(name in answer.headers for name in RATE_HEADERS), path


async def test_pending_limit_refuses_what_does_not_fit_and_keeps_what_does(
    api: httpx.AsyncClient, settings: Settings, redis_client: Redis[Any]
) -> None:
    key, _ = await limited_key(settings, max_pending=3)
    headers = bearer(key)
    assert (
        await api.post("/v1/tasks", json={"task_id": "p-1"}, headers=headers)
    ).status_code == 201
    batch = {"tasks": [{"task_id": "p-2"}, {"task_id": "p-3"}, {"task_id": "p-4"}]}
    refused = await api.post("/v1/tasks/batch", json=batch, headers=headers)
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "5"
    assert "2 more fit now" in refused.json()["detail"]
    assert refused.headers["ratelimit-limit"] == "3"
    batch = {"tasks": [{"task_id": "p-2"}, {"task_id": "p-3"}]}
    accepted = await api.post("/v1/tasks/batch", json=batch, headers=headers)
    assert accepted.status_code == 200
    assert accepted.headers["ratelimit-remaining"] == "0"
    assert (
        await api.post("/v1/tasks", json={"task_id": "p-5"}, headers=headers)
    ).status_code == 429
    listed = (await api.get("/v1/tasks", headers=headers)).json()["data"]
    assert sorted(t["task_id"] for t in listed) == ["p-1", "p-2", "p-3"]

    # A finished task makes room once the count is taken again (at most PENDING_RECOUNT_S).
    assert (await api.delete("/v1/tasks/p-1", headers=headers)).status_code == 200
    await redis_client.delete(*[k async for k in redis_client.scan_iter(f"{KEY_PREFIX}*")])
    assert (
        await api.post("/v1/tasks", json={"task_id": "p-5"}, headers=headers)
    ).status_code == 201


async def test_entries_not_created_give_their_room_back(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    key, _ = await limited_key(settings, max_pending=2)
    headers = bearer(key)
    assert (
        await api.post("/v1/tasks", json={"task_id": "r-1"}, headers=headers)
    ).status_code == 201
    for _ in range(3):  # existing, and rejected entries, cost nothing
        again = await api.post("/v1/tasks", json={"task_id": "r-1"}, headers=headers)
        assert again.status_code == 200
        bad = await api.post(
            "/v1/tasks/batch", json={"tasks": [{"task_id": "bad id!"}]}, headers=headers
        )
        assert bad.status_code == 200
    assert (
        await api.post("/v1/tasks", json={"task_id": "r-2"}, headers=headers)
    ).status_code == 201


async def test_a_limited_client_does_not_limit_another(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    limited, _ = await limited_key(settings, max_rps=1, max_pending=1)
    other = await new_key(settings)
    await api.post("/v1/tasks", json={"task_id": "x-1"}, headers=bearer(limited))
    for index in range(20):
        answer = await api.post("/v1/tasks", json={"task_id": f"x-{index}"}, headers=bearer(other))
        assert answer.status_code == 201


@pytest.fixture
async def app_without_redis(database_url: str) -> AsyncIterator[FastAPI]:
    # A port where nothing listens: every Redis call fails at once, as with Redis down.
    settings = make_settings(
        database_url, f"redis://127.0.0.1:{free_port()}/0", client_max_rps=4, client_max_pending=5
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def test_without_redis_intake_keeps_working_and_each_process_counts_alone(
    app_without_redis: FastAPI, settings: Settings
) -> None:
    key = await new_key(settings)
    async with asgi_client(app_without_redis) as api:
        await at_the_start_of_a_second()
        started = time.monotonic()
        codes = [
            (
                await api.post("/v1/tasks", json={"task_id": f"n-{i}"}, headers=bearer(key))
            ).status_code
            for i in range(6)
        ]
        assert time.monotonic() - started < 1.0  # no waiting on the missing Redis
        assert codes == [201, 201, 201, 201, 429, 429]
        await asyncio.sleep(1.0)
        answer = await api.post(
            "/v1/tasks/batch",
            json={"tasks": [{"task_id": "n-4"}, {"task_id": "n-5"}]},
            headers=bearer(key),
        )
        assert answer.status_code == 429  # 4 pending, room for 1
        assert "1 more fit" in answer.json()["detail"]


async def test_two_keys_of_one_client_see_the_same_data(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    first = await new_key(settings)
    name = (await list_keys(settings, None))[-1].client_name
    _, second = await add_key(settings, name)
    assert second != first
    created = await api.post("/v1/tasks", json={"task_id": "shared-1"}, headers=bearer(first))
    assert created.status_code == 201
    read = await api.get("/v1/tasks/shared-1", headers=bearer(second))
    assert read.status_code == 200
    assert read.json() == created.json() | {"next_poll_at": read.json()["next_poll_at"]}
    listed = (await api.get("/v1/tasks", headers=bearer(second))).json()["data"]
    assert [t["task_id"] for t in listed] == ["shared-1"]


async def test_last_used_is_recorded_once_a_minute_not_per_call(
    api: httpx.AsyncClient, api_app: FastAPI, settings: Settings
) -> None:
    key = await new_key(settings)
    name = (await list_keys(settings, None))[-1].client_name
    assert (await list_keys(settings, name))[0].last_used_at is None
    for _ in range(5):
        assert (await api.get("/v1/tasks", headers=bearer(key))).status_code == 200
    await api_app.state.resources.key_usage.drain()
    first = (await list_keys(settings, name))[0].last_used_at
    assert first is not None
    assert (await api.get("/v1/tasks", headers=bearer(key))).status_code == 200
    await api_app.state.resources.key_usage.drain()
    assert (await list_keys(settings, name))[0].last_used_at == first
