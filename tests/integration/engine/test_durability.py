"""Durability with real processes: `phonebridge scheduler` and `phonebridge worker` as a user
starts them. SIGKILL of a worker mid-batch and a flush of Redis lose no task and produce no
duplicate event; leases run out and the work is redone."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.sim.server import SimServer
from tests.support.engine import Processes
from tests.support.factories import insert_client, insert_tasks
from tests.support.rows import events_of, tasks_of
from tests.support.waiting import wait_until_async

# Real `phonebridge worker` and `scheduler` processes: about 10 s a test.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks"),
]

TASKS = 300
# The tasks' lifetime is not what these tests are about: long enough that a machine busy with
# another test worker still finishes them (about 10 s when quiet) instead of expiring them.
TTL_S = 120.0


async def all_final(sessions: async_sessionmaker[AsyncSession], client: int) -> bool:
    async with sessions() as session:
        pending = await session.execute(
            text("SELECT count(*) FROM tasks WHERE client_id = :c AND state = 'pending'"),
            {"c": client},
        )
        return int(pending.scalar_one()) == 0


def assert_each_task_completed_once(
    rows: dict[str, dict[str, Any]], events: list[dict[str, Any]]
) -> None:
    assert len(rows) == TASKS
    assert {row["state"] for row in rows.values()} == {"completed"}
    assert len(events) == TASKS
    assert len({event["task_pk"] for event in events}) == TASKS
    assert {event["type"] for event in events} == {"task.completed"}


async def test_killed_worker_loses_nothing_and_duplicates_no_event(
    sessions: async_sessionmaker[AsyncSession], fresh_sim: SimServer, processes: Processes
) -> None:
    client = await insert_client(sessions)
    task_ids = [f"sim-ring-0-kill-{i}-{os.getpid()}" for i in range(TASKS)]
    await insert_tasks(sessions, client, task_ids, ttl_s=TTL_S)
    processes.start("scheduler")
    worker = processes.start("worker", "--concurrency", "2")

    def calls() -> int:
        return len(fresh_sim.control.calls(endpoint="task_result"))

    await wait_until_async(lambda: calls() >= 40, timeout_s=30)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    rows = await tasks_of(sessions, client)
    assert any(row["state"] == "pending" for row in rows.values()), "killed mid-run"
    # Calls already made whose batch was never written back are redone once the leases end.
    processes.start("worker", "--concurrency", "2")
    await wait_until_async(lambda: all_final(sessions, client), timeout_s=90)

    assert_each_task_completed_once(
        await tasks_of(sessions, client), await events_of(sessions, client)
    )
    assert calls() >= TASKS


async def test_flushed_redis_loses_nothing_and_duplicates_no_event(
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    processes: Processes,
    redis_url: str,
) -> None:
    client = await insert_client(sessions)
    task_ids = [f"sim-ring-1-flush-{i}-{os.getpid()}" for i in range(TASKS)]
    await insert_tasks(sessions, client, task_ids, ttl_s=TTL_S)
    processes.start("scheduler")
    processes.start("worker", "--concurrency", "2")
    await wait_until_async(
        lambda: len(fresh_sim.control.calls(endpoint="task_result")) >= 60, timeout_s=30
    )
    # This test run's own Redis database: FLUSHALL would also wipe other runs sharing the server.
    flusher = redis.Redis.from_url(redis_url)
    flusher.flushdb()
    await wait_until_async(lambda: all_final(sessions, client), timeout_s=90)
    flusher.flushdb()
    flusher.close()

    rows = await tasks_of(sessions, client)
    assert_each_task_completed_once(rows, await events_of(sessions, client))
    assert {row["poll_count"] for row in rows.values()} == {2}
