"""Several schedulers and workers at once, as separate processes, against the simulator in its
own process (so its arrival times are not skewed by this test's threads): the shared rate ceiling
holds over every sliding second, and no task is polled twice in the same round."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.domain.signing import verify_signature
from service.run.processes import free_port
from service.sim.server import SimProcess
from tests.support.api import bearer
from tests.support.engine import Processes
from tests.support.factories import client_and_key, insert_client, insert_tasks
from tests.support.receivers import Receiver
from tests.support.rows import deliveries_of_event, events_of, tasks_of
from tests.support.settings import process_env
from tests.support.upstream import API_ID, API_SECRET
from tests.support.waiting import wait_until_async

# Real `phonebridge api`, `worker` and `scheduler` processes: about 10 s a test.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks"),
]

MAX_RPS = 25


# The simulator's scheduling priority where the machine allows it (root): see sim_process.
SIM_NICENESS = -5


@pytest.fixture
def sim_process() -> Iterator[SimProcess]:
    """The simulated upstream, which is also the instrument that counts calls a second: it stamps
    a call when its loop reads it, so a simulator starved by the fleet on a 2-core machine stamps
    calls that arrived apart as if together. A real upstream runs on its own machine; here it
    runs at a higher priority when it may, so the count is the fleet's spacing, not its own
    starvation."""
    with SimProcess(["--api-id", API_ID, "--api-secret", API_SECRET]) as sim:
        assert sim.process is not None
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, sim.process.pid, SIM_NICENESS)
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
        # An answer slower than a starved machine's scheduling, not a timeout and a second call.
        PHONEBRIDGE_UPSTREAM_TIMEOUT_S="10",
    )
    fleet = Processes(env, tmp_path)
    try:
        for _ in range(2):
            fleet.start("scheduler")
            fleet.start("worker", "--concurrency", "2")

        async def all_done() -> bool:
            rows = await tasks_of(sessions, client)
            return all(row["state"] == "completed" for row in rows.values())

        await wait_until_async(all_done, timeout_s=120, interval_s=0.2)
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


async def test_a_fleet_of_apis_schedulers_and_workers_handles_each_task_and_webhook_once(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    sim_process: SimProcess,
    receiver: Receiver,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """2 API processes, 2 schedulers and 3 workers on one PostgreSQL and Redis: every task
    registered through either API is polled exactly as its script needs, gets one event and one
    signed webhook sent once, and the ceiling holds across all of them."""
    client_id, key = await client_and_key(settings, sessions, f"fleet-{secrets.token_hex(4)}")
    suffix = f"{os.getpid()}-{secrets.token_hex(2)}"
    at_once = [f"sim-ring-0-fleet2-{i}-{suffix}" for i in range(60)]
    later = [f"sim-ring-2-fleet2-{i}-{suffix}" for i in range(20)]
    env = process_env(
        database_url,
        redis_url,
        sim_process.base_url,
        PHONEBRIDGE_UPSTREAM_MAX_RPS=str(MAX_RPS),
        PHONEBRIDGE_POLL_BATCH_SIZE="10",
        PHONEBRIDGE_LEASE_S="8",
        # An answer slower than a starved machine's scheduling, not a timeout and a second call.
        PHONEBRIDGE_UPSTREAM_TIMEOUT_S="10",
        PHONEBRIDGE_POLL_SCHEDULE="backoff",
        PHONEBRIDGE_SECRET_KEY="fleet-test-secret-key-0123456789",
        PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE="true",
    )
    fleet = Processes(env, tmp_path)
    ports = [free_port(), free_port()]
    try:
        for port in ports:
            fleet.start("api", "--port", str(port))
        for _ in range(2):
            fleet.start("scheduler")
        for _ in range(3):
            fleet.start("worker", "--concurrency", "2")
        apis = [
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=bearer(key))
            for port in ports
        ]
        try:
            for api in apis:
                await wait_until_async(partial(_answers, api), timeout_s=60, what="the APIs")
            created = await apis[0].post(
                "/v1/subscriptions",
                json={"url": receiver.url("/fleet"), "event_types": ["task.completed"]},
            )
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            everything = at_once + later
            halves = [everything[0::2], everything[1::2]]
            for api, half in zip(apis, halves, strict=True):
                answer = await api.post(
                    "/v1/tasks/batch", json={"tasks": [{"task_id": t} for t in half]}
                )
                assert answer.status_code == 200, answer.text
                assert {r["outcome"] for r in answer.json()["results"]} == {"created"}
            await receiver.wait_for(len(everything), path="/fleet", timeout=120)
        finally:
            for api in apis:
                await api.aclose()
        # Give a duplicate, if any were on its way, the time to arrive.
        await asyncio.sleep(1.0)
    finally:
        fleet.stop_all()

    stats = sim_process.control.stats(window_s=1.0, endpoint="task_result")
    assert stats["max_calls_in_window"] <= MAX_RPS
    assert stats["calls_after_final"] == 0
    for task_id in at_once:
        assert sim_process.control.task(task_id)["calls"] == 1
    for task_id in later:
        assert sim_process.control.task(task_id)["calls"] == 3
    rows = await tasks_of(sessions, client_id)
    assert {row["state"] for row in rows.values()} == {"completed"}
    events = await events_of(sessions, client_id)
    assert len(events) == len(everything)
    arrived = receiver.received("/fleet")
    assert sorted(r.headers["webhook-id"] for r in arrived) == sorted(
        e["public_id"] for e in events
    )
    now = datetime.now(UTC)
    assert all(verify_signature(secret, r.headers, r.body, now) for r in arrived)
    for event in events:
        [delivery] = await deliveries_of_event(sessions, event["public_id"])
        assert delivery["state"] == "succeeded"
        assert delivery["attempt_count"] == 1


async def _answers(api: httpx.AsyncClient) -> bool:
    try:
        return (await api.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False
