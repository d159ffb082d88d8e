"""Check jobs as stored (service/store/check_jobs.py) on the real PostgreSQL: a move written
only over the status it was read with (the progress counted from the items: beside the result
rows, in test_check_job_results.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.job_lifecycle import JobStatus
from service.domain.states import JobState, PausedReason
from service.store import check_jobs as job_store
from service.store.db import transaction
from tests.support.factories import insert_client
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
