"""Check jobs as stored (service/store/check_jobs.py) on the real PostgreSQL: a move written
only over the status it was read with, result rows streamed from a server-side cursor in input
order and in batches, and the progress counted from the items and their tasks."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.job_lifecycle import JobStatus
from service.domain.states import JobState, PausedReason
from service.store import check_jobs as job_store
from service.store.db import transaction
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import make_job


async def test_a_move_is_written_only_over_the_status_it_was_read_with(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client)
    paused = JobStatus(JobState.PAUSED, PausedReason.CLIENT)
    async with transaction(sessions) as session:
        first = await job_store.write_status(session, job, paused, utc_now())
        # A second move decided on the same (now stale) read finds the row changed.
        stale = await job_store.write_status(session, job, JobStatus(JobState.CANCELLED), utc_now())
    assert first is not None
    assert first.status == paused
    assert first.started_at is not None
    assert stale is None


async def test_results_stream_in_input_order_in_batches_of_the_fetch_size(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    numbers = [mx_number(100 + i) for i in range(7)] + [mx_number(100)]
    job = await make_job(sessions, settings, client, numbers, start=False)
    async with transaction(sessions) as session:
        batches = [
            batch async for batch in job_store.stream_results(session, job.id, rows_per_fetch=3)
        ]
        progress = await job_store.job_progress(session, job.id, utc_now())
    assert [len(batch) for batch in batches] == [3, 3, 2]
    rows = [row for batch in batches for row in batch]
    assert [row.line for row in rows] == list(range(1, 9))
    assert [row.state for row in rows] == ["waiting"] * 8
    assert rows[7].phone_number_masked == rows[0].phone_number_masked
    assert progress.waiting == 7
    assert progress.tasks_by_state == {}
