"""Several schedulers and workers at once, as separate processes, against the simulator in its
own process (so its arrival times are not skewed by this test's threads): the shared rate ceiling
holds over every sliding second, and no task is polled twice in the same round."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.sim.server import SimProcess
from tests.support.engine import Processes
from tests.support.factories import insert_client, insert_tasks
from tests.support.rows import events_of, tasks_of
from tests.support.settings import process_env
from tests.support.upstream import API_ID, API_SECRET
from tests.support.waiting import wait_until_async

# Real `phonebridge worker` and `scheduler` processes: about 10 s a test.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks"),
]

MAX_RPS = 25


@pytest.fixture
def sim_process() -> Iterator[SimProcess]:
    with SimProcess(["--api-id", API_ID, "--api-secret", API_SECRET]) as sim:
        yield sim


async def test_fleet_stays_under_the_ceiling_and_polls_each_task_once_per_round(
    sessions: async_sessionmaker[AsyncSession],
    sim_process: SimProcess,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    client = await insert_client(sessions)
    suffix = os.getpid()
    at_once = [f"sim-busy-0-fleet-{i}-{suffix}" for i in range(60)]
    later = [f"sim-ring-2-fleet-{i}-{suffix}" for i in range(20)]
    await insert_tasks(sessions, client, at_once + later)
    env = process_env(
        database_url,
        redis_url,
        sim_process.base_url,
        PHONEBRIDGE_UPSTREAM_MAX_RPS=str(MAX_RPS),
        PHONEBRIDGE_POLL_BATCH_SIZE="10",
        PHONEBRIDGE_LEASE_S="8",
    )
    fleet = Processes(env, tmp_path)
    try:
        for _ in range(2):
            fleet.start("scheduler")
            fleet.start("worker", "--concurrency", "2")

        async def all_done() -> bool:
            rows = await tasks_of(sessions, client)
            return all(row["state"] == "completed" for row in rows.values())

        await wait_until_async(all_done, timeout_s=40, interval_s=0.2)
    finally:
        fleet.stop_all()

    # Every call counts against the ceiling, including those for tasks other tests left pending.
    stats = sim_process.control.stats(window_s=1.0, endpoint="task_result")
    assert stats["max_calls_in_window"] <= MAX_RPS
    assert stats["calls_after_final"] == 0
    ours = set(at_once + later)
    calls = sim_process.control.calls(endpoint="task_result")
    assert len([c for c in calls if c["task_id"] in ours]) == len(at_once) + 3 * len(later)
    for task_id in at_once:
        assert sim_process.control.task(task_id)["calls"] == 1
    rows = await tasks_of(sessions, client)
    assert {rows[t]["poll_count"] for t in later} == {3}
    assert len(await events_of(sessions, client)) == len(at_once) + len(later)
