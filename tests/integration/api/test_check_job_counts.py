"""A running job's counts as the REST API shows them: `GET /v1/check-jobs/{id}` and the list show
the count kept from a client's earlier read while it is young (service/features/job_counts.py); a
move answers with the job counted at once, and the next read counts again."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.api import bearer
from tests.support.jobs import create_json_job, get_job, job_move, mx_number
from tests.support.jobs_store import keep_count_then_change_it


async def test_reads_show_the_kept_count_and_a_move_counts_again(
    api: httpx.AsyncClient,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis[Any],
) -> None:
    body = {"items": [{"phone_number": mx_number(i)} for i in range(3)]}
    job_id = (await create_json_job(api, key, body)).json()["id"]
    kept = await keep_count_then_change_it(sessions, redis_client, job_id)
    assert (await get_job(api, key, job_id))["counts"]["submitted"] == kept
    [listed] = (await api.get("/v1/check-jobs", headers=bearer(key))).json()["data"]
    assert listed["counts"]["submitted"] == kept
    paused = await job_move(api, key, job_id, "pause")
    assert paused.json()["counts"]["submitted"] == kept + 1
    assert (await get_job(api, key, job_id))["counts"]["submitted"] == kept + 1
