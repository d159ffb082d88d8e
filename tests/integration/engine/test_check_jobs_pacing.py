"""Interactive work goes first: while a check job fills the shared ceiling (a real engine, the
simulator and Redis), a single `POST /v1/checks` is still submitted within about a second, and
due polls keep their schedule (each single check, answered upstream a second after its submit,
is completed soon after)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.sim.server import SimServer
from tests.support.api import api_client, bearer
from tests.support.checks import submit
from tests.support.engine import running_engine
from tests.support.factories import new_key
from tests.support.jobs import create_json_job, get_job, job_move, mx_number
from tests.support.settings import engine_settings
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks")

CEILING_RPS = 20.0
JOB_ITEMS = 400
SINGLE_CHECKS = 6
# "Within about a second": the answer to a single check beside a job at the full ceiling. Measured
# 0.25-0.6 s on the shared 2-core machine (load 9-10); 3-4.6 s before background claims yielded
# (a job booked the ceiling's next seconds ahead of it).
MAX_SUBMIT_S = 1.5


@pytest.fixture
def paced_settings(database_url: str, redis_url: str, fresh_sim: SimServer) -> Settings:
    return engine_settings(
        database_url,
        redis_url,
        fresh_sim.base_url,
        upstream_max_rps=CEILING_RPS,
        poll_initial_s=1.0,
        poll_max_s=1.0,
        task_ttl_s=120.0,
    )


@pytest.fixture
async def api(paced_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(paced_settings) as client:
        yield client


async def test_a_single_check_gets_its_slot_within_a_second_beside_a_job_at_the_ceiling(
    api: httpx.AsyncClient, paced_settings: Settings, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-1s")
    job_key = await new_key(paced_settings)
    key = await new_key(paced_settings)
    items = [{"phone_number": mx_number(1000 + i)} for i in range(JOB_ITEMS)]
    job_id = (await create_json_job(api, job_key, {"items": items})).json()["id"]
    latencies: list[float] = []
    tasks: list[dict[str, Any]] = []
    async with running_engine(paced_settings):

        async def at_the_ceiling() -> bool:
            job = await get_job(api, job_key, job_id)
            return bool(job["counts"]["submitted"] >= CEILING_RPS * 2)

        await wait_until_async(at_the_ceiling, timeout_s=20, what="the job at the ceiling")
        for index in range(SINGLE_CHECKS):
            started = time.monotonic()
            response = await submit(api, key, mx_number(5000 + index))
            latencies.append(time.monotonic() - started)
            assert response.status_code == 201, response.text
            tasks.append(response.json())

        async def all_completed() -> bool:
            for task in tasks:
                current = await api.get(f"/v1/tasks/{task['task_id']}", headers=bearer(key))
                if current.json()["state"] != "completed":
                    return False
            return True

        # Answered upstream 1 s after submit, first polled 1 s after it: polls on schedule
        # complete them all within a few seconds even with the job filling the ceiling.
        await wait_until_async(all_completed, timeout_s=6, what="the single checks' answers")
        # The job was still filling the ceiling all along.
        job = await get_job(api, job_key, job_id)
        assert job["counts"]["to_submit"] > job["counts"]["submitted"]
        await job_move(api, job_key, job_id, "cancel")

    assert max(latencies) < MAX_SUBMIT_S, latencies
