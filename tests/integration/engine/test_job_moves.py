"""The scheduler's step of the system's job moves (service/engine/job_moves.py) run directly: a
started job with nothing left to submit (every item a duplicate or answered from an earlier
check) is completed with one `job.completed`, however often the step runs; the account pause
pauses a queued job (upstream) and its lifting runs it again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.states import JobState, PausedReason
from service.engine.job_moves import JobSystemMoves
from service.store import check_jobs as job_store
from service.store.db import transaction
from service.upstream.pause import close_pause, open_pause
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE, make_job

pytestmark = pytest.mark.usefixtures("flush_redis")


async def job_now(sessions: async_sessionmaker[AsyncSession], job_pk: int) -> job_store.JobRow:
    async with transaction(sessions) as session:
        job = await job_store.job_by_pk(session, job_pk)
    assert job is not None
    return job


async def test_a_job_with_nothing_to_submit_completes_with_one_event(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, redis_client: Redis[Any]
) -> None:
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client, [mx_number(7)])
    async with transaction(sessions) as session:
        # As if its one item had been answered from an earlier check.
        await session.execute(
            text("UPDATE check_job_items SET state = 'cached' WHERE job_pk = :j"), {"j": job.id}
        )
        await session.execute(
            text(
                "UPDATE scheduled_submits SET state = 'done', phone_number_sealed = NULL "
                "WHERE job_pk = :j"
            ),
            {"j": job.id},
        )
    step = JobSystemMoves(sessions, redis_client, PACE, interval_s=0.1)
    await step.run(utc_now())
    await step.run(utc_now())
    assert (await job_now(sessions, job.id)).state is JobState.COMPLETED
    async with transaction(sessions) as session:
        events = (
            await session.execute(
                text("SELECT type, data->>'state' FROM events WHERE job_pk = :j"), {"j": job.id}
            )
        ).all()
    assert [tuple(row) for row in events] == [("job.completed", "completed")]


async def test_the_account_pause_pauses_a_queued_job_and_its_lifting_runs_it(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, redis_client: Redis[Any]
) -> None:
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client)
    step = JobSystemMoves(sessions, redis_client, PACE, interval_s=0.1)
    await open_pause(redis_client, "KEY_EXPIRED", datetime.now(UTC))
    await step.run(utc_now())
    paused = await job_now(sessions, job.id)
    assert (paused.state, paused.paused_reason) == (JobState.PAUSED, PausedReason.UPSTREAM)
    await close_pause(redis_client)
    await step.run(utc_now())
    assert (await job_now(sessions, job.id)).state is JobState.RUNNING
