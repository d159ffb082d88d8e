"""Re-checks end to end in one process: `POST /v1/checks` with `recheck` through the real API, the
scheduler loop and a real Celery worker, the simulator answering a number differently on each
submit. One pending task, upstream submitted once more per re-check, exactly one final event after
the last answer, the earlier answers in `rechecks`, the sealed number erased; a cancel stops a
re-check that waits; the pause and the rate ceiling hold re-checks back like any call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.sim.server import SimServer
from tests.support.api import api_client, bearer, feed
from tests.support.checks import scheduled_submit_of, submit, submit_calls
from tests.support.engine import running_engine
from tests.support.factories import new_key
from tests.support.settings import engine_settings
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks")

NUMBER = "525512340001"
RETRY_THEN_RING = ["temp_unavailable-1", "ring-1"]
SOON = {"verdicts": ["retry"], "after_s": 1, "max": 1}


@pytest.fixture
def recheck_settings(database_url: str, redis_url: str, fresh_sim: SimServer) -> Settings:
    # A re-check one second after its answer (the deployment's bound lowered for tests).
    return engine_settings(
        database_url, redis_url, fresh_sim.base_url, recheck_min_after_s=1, task_ttl_s=60.0
    )


@pytest.fixture
async def api(recheck_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(recheck_settings) as client:
        yield client


@pytest.fixture
async def key(recheck_settings: Settings) -> str:
    return await new_key(recheck_settings)


async def task_of(api: httpx.AsyncClient, key: str, task_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def final_task(api: httpx.AsyncClient, key: str, task_id: str) -> dict[str, Any]:
    async def final() -> dict[str, Any] | None:
        task = await task_of(api, key, task_id)
        return task if task["state"] != "pending" else None

    task: dict[str, Any] = await wait_until_async(final, timeout_s=30, what="the final state")
    return task


async def events_for(api: httpx.AsyncClient, key: str, task_id: str) -> list[dict[str, Any]]:
    page = await feed(api, key)
    return [event for event in page["data"] if event["data"]["task_id"] == task_id]


async def test_a_retry_answer_is_checked_again_and_the_task_ends_once_with_the_last_answer(
    api: httpx.AsyncClient,
    key: str,
    recheck_settings: Settings,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.script_number(NUMBER, RETRY_THEN_RING)
    created = await submit(api, key, NUMBER, recheck=SOON)
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["state"] == "pending"
    assert first["rechecks"] == []

    async with running_engine(recheck_settings):
        task = await final_task(api, key, first["task_id"])
        events = await wait_until_async(
            lambda: events_for(api, key, first["task_id"]), what="the task's event"
        )

    assert task["task_id"] == first["task_id"]
    assert task["state"] == "completed"
    assert task["result"]["phone_status"] == "ring"
    (earlier,) = task["rechecks"]
    assert earlier["task_id"] == first["task_id"]
    assert earlier["phone_status"] == "temp_unavailable"
    assert datetime.fromisoformat(earlier["at"]) < datetime.fromisoformat(task["completed_at"])
    assert submit_calls(fresh_sim) == 2
    (event,) = events
    assert event["type"] == "task.completed"
    assert event["data"]["result"]["phone_status"] == "ring"
    assert event["data"]["rechecks"] == task["rechecks"]
    # The re-check's upstream task was polled, not the first one again after its answer.
    assert fresh_sim.control.task(first["task_id"])["calls_after_final"] == 0
    kept = await scheduled_submit_of(sessions, first["task_id"])
    assert kept is not None
    assert (kept["state"], kept["phone_number_sealed"]) == ("done", None)
