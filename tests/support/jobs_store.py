"""Check jobs made through the feature layer, for the store's and the engine's tests: created as a
client creates them (items, rejections, one sealed scheduled submit per item to submit), and
moved to the state a test needs by the feature's own moves (the client's, or the engine's), so
their rows are what the product writes. Every job made here is named JOB_NAME, so a test can
remove them after it (`delete_jobs_made_here`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.job_lifecycle import JobMove
from service.domain.states import JobState, PausedReason
from service.features import check_jobs as job_feature
from service.features.check_job_creation import JobMedia, JobSecrets, create_job
from service.features.check_jobs import JobPace
from service.features.job_counts import KeptCounts
from service.store.check_jobs import JobRow, job_by_pk
from service.store.db import transaction
from tests.support.factories import insert_tasks
from tests.support.jobs import mx_number

PACE = JobPace(ceiling_per_s=50.0)
JOB_NAME = "made by tests/support/jobs_store.py"

# How each state a test may ask for is reached from `queued` (a started job, none of its items
# taken yet): the client's moves and the engine's, as the product makes them.
_MOVES_FROM_QUEUED: dict[tuple[JobState, PausedReason | None], tuple[JobMove, ...]] = {
    (JobState.QUEUED, None): (),
    (JobState.RUNNING, None): (JobMove.BEGIN,),
    (JobState.PAUSED, PausedReason.CLIENT): (JobMove.PAUSE,),
    (JobState.PAUSED, PausedReason.UPSTREAM): (JobMove.BEGIN, JobMove.UPSTREAM_PAUSED),
}


async def make_job(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    client_id: int,
    numbers: list[str] | None = None,
    *,
    start: bool = True,
    now: datetime | None = None,
) -> JobRow:
    """A job of these numbers (three distinct ones by default), `queued` unless `start` is false
    (a draft), created at `now` (the clock's by default); its submits are waiting, due at
    `now`, or, for a draft, on standby."""
    numbers = numbers if numbers is not None else [mx_number(i) for i in range(3)]
    body = "phone_number\n" + "\n".join(numbers) + "\n"
    query = [("name", JOB_NAME)] + ([] if start else [("start", "false")])
    async with transaction(sessions) as session:
        created = await create_job(
            session,
            client_id,
            media=JobMedia.CSV,
            body=body.encode(),
            query=query,
            idempotency_key=None,
            settings=settings,
            secrets=JobSecrets.of(settings),
            pace=PACE,
            now=now or utc_now(),
        )
    return created.view.job


async def job_in_state(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    client_id: int,
    now: datetime,
    *,
    state: JobState = JobState.RUNNING,
    paused_reason: PausedReason | None = None,
) -> JobRow:
    """A job of three items, none submitted yet, made at `now` and moved to `state` there: its
    submits waiting (due at `now`) while it may submit, else on standby. A draft, `queued`,
    `running`, or `paused` by its client or upstream (a budget pause is the store's to make)."""
    if state is JobState.DRAFT:
        return await make_job(sessions, settings, client_id, start=False, now=now)
    moves = _MOVES_FROM_QUEUED[(state, paused_reason)]
    job = await make_job(sessions, settings, client_id, now=now)
    async with transaction(sessions) as session:
        for move in moves:
            if move.by_client:
                view = await job_feature.move_job_by_client(
                    session, client_id, job.public_id, move, PACE, now
                )
                job = view.job
            else:
                moved = await job_feature.system_move(session, job, move, now)
                assert moved is not None, f"{move} did not move {job.state}"
                job = moved
    assert (job.state, job.paused_reason) == (state, paused_reason)
    return job


async def job_row(sessions: async_sessionmaker[AsyncSession], job_pk: int) -> dict[str, Any]:
    """A job's row, straight from the store."""
    async with transaction(sessions) as session:
        row = (
            await session.execute(text("SELECT * FROM check_jobs WHERE id = :id"), {"id": job_pk})
        ).one()
    return dict(row._mapping)


async def job_submits(
    sessions: async_sessionmaker[AsyncSession], job_pk: int
) -> list[dict[str, Any]]:
    """A job's scheduled submits, by line."""
    async with transaction(sessions) as session:
        rows = await session.execute(
            text("SELECT * FROM scheduled_submits WHERE job_pk = :id ORDER BY job_line"),
            {"id": job_pk},
        )
        return [dict(row._mapping) for row in rows]


async def delete_jobs_made_here(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Remove the jobs made here, with their items and submits (no later claim finds them)."""
    async with transaction(sessions) as session:
        await session.execute(text("DELETE FROM check_jobs WHERE name = :n"), {"n": JOB_NAME})


async def one_more_task(sessions: async_sessionmaker[AsyncSession], job_pk: int) -> None:
    """A task of the job appears (as a submit makes one): a count of the job made after this
    shows one more submitted than a count made before."""
    async with transaction(sessions) as session:
        job = await job_by_pk(session, job_pk)
    assert job is not None
    task_id = f"sim-ring-0-job{job_pk}-{utc_now():%f}"
    [task_pk] = await insert_tasks(sessions, job.client_id, [task_id])
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET job_pk = :j WHERE id = :t"), {"j": job_pk, "t": task_pk}
        )


async def keep_count_then_change_it(
    sessions: async_sessionmaker[AsyncSession], redis: Redis[Any], public_id: str
) -> int:
    """Keep the running job's count as a client's read keeps it, but young for an hour
    (service/features/job_counts.py), then give the job one more task: a surface that shows the
    kept count shows the returned number submitted; one that counts again, one more."""
    async with transaction(sessions) as session:
        client_id, job_pk = (
            await session.execute(
                text("SELECT client_id, id FROM check_jobs WHERE public_id = :p"), {"p": public_id}
            )
        ).one()
        an_hour_ahead = utc_now() + timedelta(hours=1)
        view = await job_feature.find_job(
            session, client_id, public_id, PACE, an_hour_ahead, kept=KeptCounts(redis)
        )
    await one_more_task(sessions, job_pk)
    return view.counts.submitted
