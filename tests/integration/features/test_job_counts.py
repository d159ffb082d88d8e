"""A running job's counts kept between its client's reads (service/features/job_counts.py): shown
again while young enough, counted again once old, after any change of the job's status, or when
what Redis holds cannot be read; with Redis away, counted at each read. The REST routes' use of it
and the portal's use of it are tested in tests/integration/api/test_check_job_counts.py and
tests/integration/portal/test_portal_jobs.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.job_count_age import MAX_AGE_S, MIN_AGE_S
from service.domain.job_lifecycle import JobMove
from service.features import check_jobs as job_feature
from service.features.job_counts import KEY_PREFIX, KeptCounts
from service.store.check_jobs import JobRow
from service.store.db import transaction
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE, delete_jobs_made_here, make_job, one_more_task
from tests.support.receivers import refused_port


@pytest.fixture
async def running(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[tuple[int, JobRow]]:
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client, [mx_number(i) for i in range(3)])
    yield client, job
    await delete_jobs_made_here(sessions)


@dataclass(frozen=True)
class Watched:
    """A running job of three items, its client, and counts kept in the run's Redis."""

    client: int
    job: JobRow
    kept: KeptCounts


@pytest.fixture
def watched(running: tuple[int, JobRow], redis_client: Redis[Any]) -> Watched:
    client, job = running
    return Watched(client, job, KeptCounts(redis_client))


async def submitted(
    sessions: async_sessionmaker[AsyncSession],
    watched: Watched,
    now: datetime,
    kept: KeptCounts | None,
) -> int:
    """The job's `submitted` count as a read at `now` shows it (through `kept`, or counted)."""
    client, job = watched.client, watched.job
    async with transaction(sessions) as session:
        view = await job_feature.find_job(session, client, job.public_id, PACE, now, kept=kept)
    return view.counts.submitted


async def kept_then_outdated(
    sessions: async_sessionmaker[AsyncSession], watched: Watched, now: datetime
) -> None:
    """A client's read at `now` keeps the job's count (nothing submitted yet); then a task of the
    job appears, so a count made after this shows one submitted."""
    assert await submitted(sessions, watched, now, watched.kept) == 0
    await one_more_task(sessions, watched.job.id)


async def test_a_count_is_shown_again_while_young_and_made_again_once_old(
    sessions: async_sessionmaker[AsyncSession], watched: Watched
) -> None:
    now = utc_now()
    await kept_then_outdated(sessions, watched, now)
    young = now + timedelta(seconds=MIN_AGE_S / 2)
    assert await submitted(sessions, watched, young, watched.kept) == 0
    # What the engine, a move's answer and the job.completed event read: counted at once.
    assert await submitted(sessions, watched, young, None) == 1
    old = now + timedelta(seconds=MAX_AGE_S)
    assert await submitted(sessions, watched, old, watched.kept) == 1


async def test_a_count_made_before_a_change_of_status_is_never_shown_after_it(
    sessions: async_sessionmaker[AsyncSession], watched: Watched
) -> None:
    now = utc_now()
    await kept_then_outdated(sessions, watched, now)
    async with transaction(sessions) as session:
        paused = await job_feature.move_job_by_client(
            session,
            watched.client,
            watched.job.public_id,
            JobMove.PAUSE,
            PACE,
            now + timedelta(milliseconds=1),
        )
    assert paused.counts.submitted == 1
    young = now + timedelta(seconds=MIN_AGE_S / 2)
    assert await submitted(sessions, watched, young, watched.kept) == 1


async def test_a_kept_count_that_cannot_be_read_is_made_again(
    sessions: async_sessionmaker[AsyncSession], watched: Watched, redis_client: Redis[Any]
) -> None:
    now = utc_now()
    for garbage in (b"not json", b'{"version": 1}', b"[]"):
        await redis_client.set(f"{KEY_PREFIX}{watched.job.id}", garbage)
        assert await submitted(sessions, watched, now, watched.kept) == 0
    # ...and what replaced it is kept.
    await one_more_task(sessions, watched.job.id)
    assert await submitted(sessions, watched, now, watched.kept) == 0


async def test_with_redis_away_a_job_is_counted_at_each_read(
    sessions: async_sessionmaker[AsyncSession], running: tuple[int, JobRow]
) -> None:
    away: Redis[Any] = Redis.from_url(
        f"redis://127.0.0.1:{refused_port()}", socket_connect_timeout=0.5
    )
    try:
        watched = Watched(*running, KeptCounts(away))
        now = utc_now()
        await kept_then_outdated(sessions, watched, now)
        assert await submitted(sessions, watched, now, watched.kept) == 1
    finally:
        await away.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
