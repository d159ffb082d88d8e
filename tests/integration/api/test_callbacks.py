"""GET /hooks/accuauth/{token}: upstream's callback taken as a hint. Always 200 {"status": "OK"};
never a result; a matched pending task is due at once, at most once per minimum interval; early
hints are remembered; unknown tokens, other clients' tasks and finished tasks change nothing."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.sim.server import SimServer
from service.store.db import create_engine_for, session_factory, transaction
from tests.support.api import api_client, bearer
from tests.support.checks import (
    PUBLIC_URL,
    callback_token,
    hint,
    insert_submitted_task,
    schedule_of,
    submit,
)
from tests.support.engine import running_engine
from tests.support.factories import new_key
from tests.support.receivers import Receiver
from tests.support.settings import engine_settings, make_settings
from tests.support.waiting import wait_until_async

OK = {"status": "OK"}


@pytest.fixture
def hint_settings(database_url: str, redis_url: str, sim: SimServer) -> Settings:
    return make_settings(
        database_url,
        redis_url,
        upstream_base_url=sim.base_url,
        public_url=PUBLIC_URL,
        hinted_poll_initial_s=30.0,
        hint_min_interval_s=2.0,
    )


@pytest.fixture
async def api(
    hint_settings: Settings, fresh_sim: SimServer, flush_redis: None
) -> AsyncIterator[httpx.AsyncClient]:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    fresh_sim.control.set_callbacks(lose=1.0)  # the tests send the callbacks themselves
    async with api_client(hint_settings) as client:
        yield client


@pytest.fixture
async def sessions(hint_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine_for(hint_settings.sqlalchemy_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def key(hint_settings: Settings) -> str:
    return await new_key(hint_settings)


async def submitted_task_id(api: httpx.AsyncClient, key: str) -> str:
    response = await submit(api, key)
    assert response.status_code == 201, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def test_a_hint_makes_a_pending_task_due_now_and_is_no_result(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    task_id = await submitted_task_id(api, key)
    token = await callback_token(api, key)
    before = datetime.now(UTC)

    response = await hint(api, token, task_id)

    assert response.status_code == 200
    assert response.json() == OK
    next_poll_at, last_hint_at = await schedule_of(sessions, task_id)
    assert next_poll_at is not None
    assert next_poll_at <= datetime.now(UTC)
    assert last_hint_at is not None
    assert last_hint_at >= before
    task = (await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))).json()
    assert task["state"] == "pending"
    assert task["result"] is None


async def test_a_flood_of_hints_makes_at_most_one_poll_per_interval(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    task_id = await submitted_task_id(api, key)
    token = await callback_token(api, key)
    await hint(api, token, task_id)
    due_at, first_hint = await schedule_of(sessions, task_id)
    assert first_hint is not None

    answers = await asyncio.gather(*(hint(api, token, task_id) for _ in range(40)))

    assert {a.status_code for a in answers} == {200}
    # The first hint made the task due; the next within the interval is deferred to the
    # interval's end (once); every other one is dropped.
    next_poll_at, last_hint_at = await schedule_of(sessions, task_id)
    assert next_poll_at == due_at
    assert last_hint_at == first_hint + timedelta(seconds=2)
    await hint(api, token, task_id)
    assert await schedule_of(sessions, task_id) == (due_at, last_hint_at)
    metrics = (await api.get("/metrics")).text
    assert 'phonebridge_hints_total{outcome="throttled"}' in metrics
    assert 'phonebridge_hints_total{outcome="matched"}' in metrics


async def test_a_hint_soon_after_a_forged_one_is_deferred_not_lost(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    task_id = await submitted_task_id(api, key)
    token = await callback_token(api, key)
    await hint(api, token, task_id)
    # The poll that hint caused answered PENDING: the task is due later again.
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET next_poll_at = now() + interval '1 hour' WHERE task_id = :t"),
            {"t": task_id},
        )
    _, forged_at = await schedule_of(sessions, task_id)
    assert forged_at is not None

    await hint(api, token, task_id)  # the real one, within the interval

    next_poll_at, _ = await schedule_of(sessions, task_id)
    assert next_poll_at == forged_at + timedelta(seconds=2)


async def test_a_hint_after_the_interval_moves_the_task_again(
    database_url: str, redis_url: str, sim: SimServer, fresh_sim: SimServer
) -> None:
    settings = make_settings(
        database_url,
        redis_url,
        upstream_base_url=sim.base_url,
        public_url=PUBLIC_URL,
        hint_min_interval_s=0.3,
    )
    fresh_sim.control.configure(submit_script="ring-0-60s")
    fresh_sim.control.set_callbacks(lose=1.0)
    key = await new_key(settings)
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    sessions = session_factory(engine)
    try:
        async with api_client(settings) as api:
            task_id = await submitted_task_id(api, key)
            token = await callback_token(api, key)
            await hint(api, token, task_id)
            _, first = await schedule_of(sessions, task_id)
            await asyncio.sleep(0.35)
            await hint(api, token, task_id)
            _, second = await schedule_of(sessions, task_id)
    finally:
        await engine.dispose()
    assert first is not None
    assert second is not None
    assert second > first


@pytest.mark.parametrize(
    "token",
    [
        secrets.token_urlsafe(24),  # well formed, nobody's
        "short",
        "x" * 300,
        "not/a/token",
    ],
    ids=["nobodys", "short", "long", "slashes"],
)
async def test_an_unknown_token_answers_ok_and_changes_nothing(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession], token: str
) -> None:
    task_id = await submitted_task_id(api, key)
    before = await schedule_of(sessions, task_id)

    response = await api.get(f"/hooks/accuauth/{token}", params={"task_id": task_id})

    assert response.status_code in (200, 404)  # a path with a slash is not the route at all
    if response.status_code == 200:
        assert response.json() == OK
    assert await schedule_of(sessions, task_id) == before


@pytest.mark.parametrize(
    "params",
    [{}, {"task_id": ""}, {"task_id": "bad id!"}, {"task_id": "x" * 500}, {"junk": "1"}],
)
async def test_a_callback_without_a_usable_task_id_answers_ok_and_costs_no_statement(
    api: httpx.AsyncClient, key: str, params: dict[str, str]
) -> None:
    token = await callback_token(api, key)
    response = await api.get(f"/hooks/accuauth/{token}", params=params)
    assert response.status_code == 200
    assert response.json() == OK


async def test_a_hint_for_another_clients_task_changes_nothing(
    api: httpx.AsyncClient,
    key: str,
    hint_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    task_id = await submitted_task_id(api, key)
    before = await schedule_of(sessions, task_id)
    intruder = await new_key(hint_settings)
    intruder_token = await callback_token(api, intruder)

    response = await hint(api, intruder_token, task_id)

    assert response.json() == OK
    assert await schedule_of(sessions, task_id) == before


async def test_a_hint_for_a_finished_task_changes_nothing(
    api: httpx.AsyncClient,
    key: str,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.configure(submit_script="busy-0")
    task_id = await submitted_task_id(api, key)
    token = await callback_token(api, key)

    await hint(api, token, task_id)

    task = (await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))).json()
    assert task["state"] == "completed"
    assert await schedule_of(sessions, task_id) == (None, None)


async def test_a_hint_for_a_registered_task_makes_it_due_too(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    registered = await api.post("/v1/tasks", json={"task_id": "T-hinted"}, headers=bearer(key))
    assert registered.status_code == 201
    token = await callback_token(api, key)

    await hint(api, token, "T-hinted")

    _, last_hint_at = await schedule_of(sessions, "T-hinted")
    assert last_hint_at is not None


async def test_an_early_hint_is_remembered_and_makes_the_first_poll_immediate(
    api: httpx.AsyncClient,
    key: str,
    hint_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    token = await callback_token(api, key)
    await hint(api, token, "sim-ring-0-early")
    async with transaction(sessions) as session:
        client_id = (
            await session.execute(
                text("SELECT client_id FROM early_hints WHERE task_id = 'sim-ring-0-early'")
            )
        ).scalar_one()

    now = datetime.now(UTC)
    task = await insert_submitted_task(
        sessions, client_id, "sim-ring-0-early", now, first_poll_in=timedelta(seconds=30)
    )

    assert datetime.fromisoformat(json.loads(task.body_json)["next_poll_at"]) == now
    async with transaction(sessions) as session:
        left = (
            await session.execute(
                text("SELECT count(*) FROM early_hints WHERE task_id = 'sim-ring-0-early'")
            )
        ).scalar_one()
    assert left == 0


async def test_a_hinted_task_is_polled_within_about_a_second_through_the_claim_path(
    database_url: str, redis_url: str, fresh_sim: SimServer, flush_redis: None, receiver: Receiver
) -> None:
    settings = engine_settings(
        database_url,
        redis_url,
        fresh_sim.base_url,
        public_url=PUBLIC_URL,
        webhook_allow_private=True,
        hinted_poll_initial_s=60.0,
        poll_initial_s=30.0,
        poll_max_s=60.0,
    )
    fresh_sim.control.configure(submit_script="connected-0-1s")
    fresh_sim.control.set_callbacks(lose=1.0)
    key = await new_key(settings)
    lags_before = REGISTRY.get_sample_value("phonebridge_detection_lag_seconds_count") or 0.0
    async with api_client(settings) as api, running_engine(settings, deliver=True):
        subscribed = await api.post(
            "/v1/subscriptions", json={"url": receiver.url("/lag")}, headers=bearer(key)
        )
        assert subscribed.status_code == 201, subscribed.text
        task_id = await submitted_task_id(api, key)
        token = await callback_token(api, key)
        await asyncio.sleep(1.1)  # the answer is ready upstream now
        hinted_at = time.monotonic()
        await hint(api, token, task_id)

        async def completed() -> bool:
            task = (await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))).json()
            return bool(task["state"] == "completed")

        await wait_until_async(completed, timeout_s=20, what="the hinted task to complete")
        took = time.monotonic() - hinted_at

        def lag_observed() -> bool:
            count = REGISTRY.get_sample_value("phonebridge_detection_lag_seconds_count") or 0.0
            return count > lags_before

        await wait_until_async(lambda: receiver.received("/lag"), timeout_s=30, what="the webhook")
        await wait_until_async(lag_observed, timeout_s=30, what="the detection lag metric")

    # Without the hint the first poll waits 60 s (hinted_poll_initial_s); with it, the next
    # claim takes the task: within about a second on a quiet machine, 5 s beside another worker.
    assert took < 5.0
    assert len(fresh_sim.control.calls(task_id=task_id, endpoint="task_result")) == 1


async def test_a_hint_for_a_task_waiting_for_its_recheck_plans_no_poll(
    api: httpx.AsyncClient,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
) -> None:
    # Answered at once with a verdict its `recheck` names: the task waits, no poll planned.
    fresh_sim.control.script_number("525512349999", "temp_unavailable-0")
    response = await submit(api, key, "525512349999", recheck={"after_s": 600})
    assert response.status_code == 201, response.text
    task_id = response.json()["task_id"]
    token = await callback_token(api, key)

    assert (await hint(api, token, task_id)).json() == OK

    next_poll_at, _ = await schedule_of(sessions, task_id)
    assert next_poll_at is None
