"""Re-checks end to end in one process: `POST /v1/checks` with `recheck` through the real API, the
scheduler loop and a real Celery worker, the simulator answering a number differently on each
submit. One pending task, upstream submitted once more per re-check, exactly one final event after
the last answer, the earlier answers in `rechecks`, the sealed number erased; a cancel stops a
re-check that waits; the pause and the rate ceiling hold re-checks back like any call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.sim.server import SimServer
from service.upstream.pause import close_pause, open_pause
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
    fresh_sim.control.script_number(NUMBER, *RETRY_THEN_RING)
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


async def test_an_answer_at_once_leaves_a_pending_task_with_its_result_until_the_recheck(
    api: httpx.AsyncClient,
    key: str,
    recheck_settings: Settings,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.script_number(NUMBER, "temp_unavailable-0", "ring-0")
    created = await submit(api, key, NUMBER, recheck=SOON)
    assert created.status_code == 201, created.text
    waiting = created.json()
    # Upstream answered at once: the answer is there, a re-check will follow, no poll is due.
    assert waiting["state"] == "pending"
    assert waiting["result"]["phone_status"] == "temp_unavailable"
    assert waiting["next_poll_at"] is None
    assert waiting["completed_at"] is None
    kept = await scheduled_submit_of(sessions, waiting["task_id"])
    assert kept is not None
    assert kept["state"] == "waiting"
    assert kept["phone_number_sealed"] is not None
    assert NUMBER.encode() not in bytes(kept["phone_number_sealed"])

    async with running_engine(recheck_settings):
        task = await final_task(api, key, waiting["task_id"])

    assert task["result"]["phone_status"] == "ring"
    assert [entry["phone_status"] for entry in task["rechecks"]] == ["temp_unavailable"]
    assert submit_calls(fresh_sim) == 2
    events = await wait_until_async(
        lambda: events_for(api, key, waiting["task_id"]), what="the task's event"
    )
    assert len(events) == 1


async def test_a_retry_that_persists_is_checked_max_times_and_ends_with_it(
    api: httpx.AsyncClient,
    key: str,
    recheck_settings: Settings,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.script_number(NUMBER, "line_abnormal-1", "temp_unavailable-0")
    recheck = {"verdicts": ["retry"], "after_s": 1, "max": 2}
    created = await submit(api, key, NUMBER, recheck=recheck)
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]

    async with running_engine(recheck_settings):
        task = await final_task(api, key, task_id)
        events = await wait_until_async(
            lambda: events_for(api, key, task_id), what="the task's event"
        )

    assert task["state"] == "completed"
    assert task["result"]["phone_status"] == "temp_unavailable"
    assert [e["phone_status"] for e in task["rechecks"]] == ["line_abnormal", "temp_unavailable"]
    assert task["rechecks"][0]["task_id"] == task_id
    assert task["rechecks"][1]["task_id"].startswith("instant-")
    assert submit_calls(fresh_sim) == 3
    assert len(events) == 1
    kept = await scheduled_submit_of(sessions, task_id)
    assert kept is not None
    assert (kept["state"], kept["phone_number_sealed"]) == ("done", None)


async def test_a_cancel_stops_a_recheck_that_waits_and_erases_the_number(
    api: httpx.AsyncClient,
    key: str,
    recheck_settings: Settings,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.script_number(NUMBER, "temp_unavailable-0", "ring-0")
    recheck = {"verdicts": ["retry"], "after_s": 2, "max": 1}
    created = await submit(api, key, NUMBER, recheck=recheck)
    task_id = created.json()["task_id"]

    cancelled = await api.delete(f"/v1/tasks/{task_id}", headers=bearer(key))

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    kept = await scheduled_submit_of(sessions, task_id)
    assert kept is not None
    assert (kept["state"], kept["phone_number_sealed"]) == ("done", None)
    async with running_engine(recheck_settings):
        # Past the re-check's due time, with the engine running: nothing is submitted again.
        due = datetime.now(UTC) + timedelta(seconds=2.5)
        await wait_until_async(lambda: datetime.now(UTC) > due, what="the re-check's due time")
    assert submit_calls(fresh_sim) == 1
    assert (await task_of(api, key, task_id))["state"] == "cancelled"
    assert await events_for(api, key, task_id) == []


async def test_a_paused_upstream_holds_a_due_recheck_back_until_it_resumes(
    api: httpx.AsyncClient,
    key: str,
    recheck_settings: Settings,
    fresh_sim: SimServer,
    redis_client: Redis[Any],
) -> None:
    fresh_sim.control.script_number(NUMBER, "temp_unavailable-0", "ring-0")
    created = await submit(api, key, NUMBER, recheck=SOON)
    task_id = created.json()["task_id"]
    await open_pause(redis_client, "KEY_EXPIRED", datetime.now(UTC))

    async with running_engine(recheck_settings):
        due = datetime.now(UTC) + timedelta(seconds=2)
        await wait_until_async(lambda: datetime.now(UTC) > due, what="the re-check's due time")
        assert submit_calls(fresh_sim) == 1
        assert (await task_of(api, key, task_id))["state"] == "pending"
        await close_pause(redis_client)
        task = await final_task(api, key, task_id)

    assert task["result"]["phone_status"] == "ring"
    assert submit_calls(fresh_sim) == 2


async def test_a_recheck_not_submitted_before_the_deadline_ends_the_task_with_its_answer(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    redis_client: Redis[Any],
) -> None:
    # A task waits for its re-check at most a check's validity (here 2 s) after it is due.
    settings = engine_settings(
        database_url, redis_url, fresh_sim.base_url, recheck_min_after_s=1, task_ttl_s=2.0
    )
    key = await new_key(settings)
    fresh_sim.control.script_number(NUMBER, "temp_unavailable-0", "ring-0")
    async with api_client(settings) as api:
        created = await submit(api, key, NUMBER, recheck=SOON)
        waiting = created.json()
        await open_pause(redis_client, "KEY_EXPIRED", datetime.now(UTC))
        async with running_engine(settings):
            task = await final_task(api, key, waiting["task_id"])
        events = await wait_until_async(
            lambda: events_for(api, key, waiting["task_id"]), what="the task's event"
        )

    assert datetime.fromisoformat(task["completed_at"]) >= datetime.fromisoformat(
        waiting["expires_at"]
    )
    assert task["state"] == "completed"
    assert task["result"]["phone_status"] == "temp_unavailable"
    assert task["last_error"]["code"] == "RECHECK_NOT_SUBMITTED"
    assert task["rechecks"] == []
    assert [event["type"] for event in events] == ["task.completed"]
    assert submit_calls(fresh_sim) == 1


async def test_rechecks_due_together_keep_to_the_rate_ceiling(
    database_url: str, redis_url: str, fresh_sim: SimServer
) -> None:
    ceiling = 4
    settings = engine_settings(
        database_url,
        redis_url,
        fresh_sim.base_url,
        recheck_min_after_s=1,
        upstream_max_rps=float(ceiling),
    )
    key = await new_key(settings)
    numbers = [f"5255123410{index:02d}" for index in range(12)]
    for number in numbers:
        fresh_sim.control.script_number(number, "temp_unavailable-0", "ring-0")
    async with api_client(settings) as api:
        task_ids = []
        for number in numbers:
            created = await submit(api, key, number, recheck=SOON)
            assert created.status_code == 201, created.text
            task_ids.append(created.json()["task_id"])
        async with running_engine(settings):
            tasks = [await final_task(api, key, task_id) for task_id in task_ids]

    assert {task["result"]["phone_status"] for task in tasks} == {"ring"}
    stats = fresh_sim.control.stats(window_s=1.0)
    assert stats["calls"] == 2 * len(numbers)
    assert stats["max_calls_in_window"] <= ceiling
