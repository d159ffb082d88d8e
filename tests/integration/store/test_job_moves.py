"""The jobs the engine's moves look at, as stored (service/store/job_moves.py) on the real
PostgreSQL: a started job whose every item is final, never one with an item still to submit nor
a draft; a cancelled job owed its `job.completed` until it has it; and jobs by state and paused
reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.job_lifecycle import JobMove
from service.domain.states import JobState, PausedReason
from service.features import check_jobs as job_feature
from service.store.db import transaction
from service.store.job_moves import cancelled_jobs_unreported, jobs_all_final, jobs_in_states
from service.store.outbox import record_job_completed
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE, delete_jobs_made_here, job_in_state, make_job

# Every job of the shared database is a candidate: read them all, look for the test's own.
ALL = 1_000_000


@pytest.fixture(autouse=True)
async def no_jobs_left(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    # Started jobs' submits are due: no later claim of another test may find them.
    yield
    await delete_jobs_made_here(sessions)


async def answer_every_item(sessions: async_sessionmaker[AsyncSession], job_pk: int) -> None:
    """As if each item had been answered from an earlier check: final, its submit done."""
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE check_job_items SET state = 'cached' WHERE job_pk = :j"), {"j": job_pk}
        )
        await session.execute(
            text(
                "UPDATE scheduled_submits SET state = 'done', phone_number_sealed = NULL "
                "WHERE job_pk = :j"
            ),
            {"j": job_pk},
        )


async def test_a_started_job_is_all_final_once_every_item_is_and_never_a_draft(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    answered = await make_job(sessions, settings, client, [mx_number(300)])
    waiting = await make_job(sessions, settings, client, [mx_number(301)])
    draft = await make_job(sessions, settings, client, [mx_number(302)], start=False)
    await answer_every_item(sessions, answered.id)
    await answer_every_item(sessions, draft.id)
    async with transaction(sessions) as session:
        found = {job.id for job in await jobs_all_final(session, ALL)}
    assert answered.id in found
    assert waiting.id not in found
    assert draft.id not in found


async def test_a_cancelled_job_is_unreported_until_its_job_completed_is_written(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client, [mx_number(303)])
    now = utc_now()
    async with transaction(sessions) as session:
        view = await job_feature.move_job_by_client(
            session, client, job.public_id, JobMove.CANCEL, PACE, now
        )
    assert view.job.state is JobState.CANCELLED
    async with transaction(sessions) as session:
        # The client's cancel wrote its event at once (nothing was in flight): none is owed.
        assert job.id not in {j.id for j in await cancelled_jobs_unreported(session, ALL)}
        await session.execute(text("DELETE FROM events WHERE job_pk = :j"), {"j": job.id})
    async with transaction(sessions) as session:
        assert job.id in {j.id for j in await cancelled_jobs_unreported(session, ALL)}
        assert await record_job_completed(
            session, client_id=client, job_pk=job.id, data="{}", now=now
        )
    async with transaction(sessions) as session:
        assert job.id not in {j.id for j in await cancelled_jobs_unreported(session, ALL)}


async def test_jobs_are_found_by_state_and_paused_reason(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    now: datetime = utc_now()
    queued = await job_in_state(sessions, settings, client, now, state=JobState.QUEUED)
    by_upstream = await job_in_state(
        sessions, settings, client, now, state=JobState.PAUSED, paused_reason=PausedReason.UPSTREAM
    )
    by_client = await job_in_state(
        sessions, settings, client, now, state=JobState.PAUSED, paused_reason=PausedReason.CLIENT
    )
    async with transaction(sessions) as session:
        upstream_paused = await jobs_in_states(
            session, [JobState.PAUSED], paused_reason=PausedReason.UPSTREAM, limit=ALL
        )
        started = await jobs_in_states(session, [JobState.QUEUED, JobState.PAUSED], limit=ALL)
    assert by_upstream.id in {job.id for job in upstream_paused}
    assert not {queued.id, by_client.id} & {job.id for job in upstream_paused}
    assert {queued.id, by_upstream.id, by_client.id} <= {job.id for job in started}
