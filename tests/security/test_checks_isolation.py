"""Isolation on the checks routes: a submitted check, an Idempotency-Key's replay and a callback
URL belong to one client. Another client's submitted task answers 404, the same key never replays
another client's answer, and one client's callback token never moves another client's task."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.sim.server import SimServer
from tests.support.api import api_client, bearer
from tests.support.checks import callback_token, hint, schedule_of, submit, submit_calls
from tests.support.factories import new_key
from tests.support.settings import make_settings


@pytest.fixture
async def checks_api(
    database_url: str, redis_url: str, fresh_sim: SimServer, flush_redis: None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url, redis_url, upstream_base_url=fresh_sim.base_url,
        public_url="http://phonebridge.test",
    )  # fmt: skip
    fresh_sim.control.configure(submit_script="ring-0-60s")
    fresh_sim.control.set_callbacks(lose=1.0)
    async with api_client(settings) as api:
        api.settings = settings  # type: ignore[attr-defined]
        yield api


async def keys(api: httpx.AsyncClient) -> tuple[str, str]:
    settings: Settings = api.settings  # type: ignore[attr-defined]
    return await new_key(settings), await new_key(settings)


async def test_another_clients_submitted_task_answers_404(checks_api: httpx.AsyncClient) -> None:
    alice, mallory = await keys(checks_api)
    task_id = (await submit(checks_api, alice)).json()["task_id"]

    assert (
        await checks_api.get(f"/v1/tasks/{task_id}", headers=bearer(mallory))
    ).status_code == 404
    assert (
        await checks_api.delete(f"/v1/tasks/{task_id}", headers=bearer(mallory))
    ).status_code == 404
    listed = (await checks_api.get("/v1/tasks", headers=bearer(mallory))).json()["data"]
    assert listed == []


async def test_an_idempotency_key_never_replays_another_clients_answer(
    checks_api: httpx.AsyncClient, fresh_sim: SimServer
) -> None:
    alice, mallory = await keys(checks_api)
    hers = await submit(checks_api, alice, idempotency_key="order-1")
    # Same key, and a different body: for mallory it is simply a new key, never a 422 that would
    # tell her alice used it.
    his = await submit(checks_api, mallory, "+57 300 123 4567", idempotency_key="order-1")

    assert hers.status_code == his.status_code == 201
    assert his.json()["task_id"] != hers.json()["task_id"]
    assert his.json()["phone_number_masked"] != hers.json()["phone_number_masked"]
    assert submit_calls(fresh_sim) == 2


async def test_a_callback_token_moves_only_its_own_clients_tasks(
    checks_api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    alice, mallory = await keys(checks_api)
    task_id = (await submit(checks_api, alice)).json()["task_id"]
    before = await schedule_of(sessions, task_id)
    alice_url = (await checks_api.get("/v1/callback-url", headers=bearer(alice))).json()["url"]
    mallory_url = (await checks_api.get("/v1/callback-url", headers=bearer(mallory))).json()["url"]
    assert alice_url != mallory_url

    answer = await hint(checks_api, await callback_token(checks_api, mallory), task_id)

    assert answer.json() == {"status": "OK"}
    assert await schedule_of(sessions, task_id) == before


async def test_the_checks_routes_need_a_key(checks_api: httpx.AsyncClient) -> None:
    submitted = await checks_api.post("/v1/checks", json={"phone_number": "525512341234"})
    callback = await checks_api.get("/v1/callback-url")
    assert submitted.status_code == callback.status_code == 401
