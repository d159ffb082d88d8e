"""A re-check's submit is never made twice: a real `phonebridge worker` killed between upstream's
answer to the re-submit and its commit leaves the submit `submitting`; once its lease has passed
the task ends with the answer it had (SUBMIT_OUTCOME_UNKNOWN in `last_error`), its one event is
emitted, its number erased, and no worker ever submits the number again."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.engine.scheduled_submits import CRASH_AFTER_RESUBMIT_VARIABLE
from service.sim.server import SimServer
from tests.support.api import api_client, bearer, feed
from tests.support.checks import scheduled_submit_of, submit, submit_calls
from tests.support.engine import Processes
from tests.support.factories import new_key
from tests.support.settings import engine_settings
from tests.support.waiting import wait_until_async

# Real `phonebridge worker` and `scheduler` processes, and the dead submit's lease (the upstream
# timeout of 1 s, the 5 s slot wait and a margin): about 15 s.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks"),
]

NUMBER = "525512340002"


@pytest.fixture
async def api(
    database_url: str, redis_url: str, fresh_sim: SimServer
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings = engine_settings(
        database_url, redis_url, fresh_sim.base_url, recheck_min_after_s=1, task_ttl_s=120.0
    )
    key = await new_key(settings)
    async with api_client(settings) as client:
        yield client, key


async def test_a_worker_killed_after_the_resubmit_leaves_the_last_answer_and_never_resubmits(
    api: tuple[httpx.AsyncClient, str],
    fresh_sim: SimServer,
    processes: Processes,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client, key = api
    fresh_sim.control.script_number(NUMBER, "temp_unavailable-0", "ring-0")
    recheck = {"verdicts": ["retry"], "after_s": 1, "max": 1}
    created = await submit(client, key, NUMBER, recheck=recheck)
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]

    processes.start("scheduler")
    doomed = processes.start("worker", extra_env={CRASH_AFTER_RESUBMIT_VARIABLE: "1"})
    await wait_until_async(lambda: doomed.poll() is not None, timeout_s=30, what="the crash")
    assert doomed.returncode == -signal.SIGKILL
    # Upstream took the re-check; phonebridge's record says it is being submitted.
    assert submit_calls(fresh_sim) == 2
    kept = await scheduled_submit_of(sessions, task_id)
    assert kept is not None
    assert kept["state"] == "submitting"

    processes.start("worker")

    async def final() -> dict[str, object] | None:
        task = (await client.get(f"/v1/tasks/{task_id}", headers=bearer(key))).json()
        return task if task["state"] != "pending" else None

    async def events() -> list[dict[str, object]]:
        page = await feed(client, key)
        return [e for e in page["data"] if e["data"]["task_id"] == task_id]

    task = await wait_until_async(final, timeout_s=40, what="the task to end")
    ended = await wait_until_async(events, what="the task's event")

    assert task["state"] == "completed"
    assert task["result"]["phone_status"] == "temp_unavailable"
    assert task["last_error"]["code"] == "SUBMIT_OUTCOME_UNKNOWN"
    assert task["rechecks"] == []
    assert [event["type"] for event in ended] == ["task.completed"]
    assert submit_calls(fresh_sim) == 2
    kept = await scheduled_submit_of(sessions, task_id)
    assert kept is not None
    assert (kept["state"], kept["phone_number_sealed"]) == ("unknown", None)
