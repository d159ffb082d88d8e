"""The check jobs feature (service/features/check_jobs.py) called directly, as the REST routes
and the portal call it: the job's JSON is the contract's shape (the one JobOut), and the estimate
follows the deployment's ceiling (a job's creation: test_check_job_creation.py)."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.job_lifecycle import JobMove
from service.domain.schemas import JobOut
from service.features import check_jobs as job_feature
from service.features.check_jobs import JobPace
from service.store.check_jobs import JobRow
from service.store.db import transaction
from tests.support.factories import insert_client, insert_tasks
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE, make_job
from tests.support.rows import cancel_pending_tasks


async def test_the_jobs_json_is_the_contracts_job(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client, [mx_number(0), mx_number(1)], start=False)
    async with transaction(sessions) as session:
        view = await job_feature.find_job(session, client, job.public_id, PACE, utc_now())
    shown = job_feature.job_json(view)
    assert JobOut.model_validate(shown).model_dump() == JobOut.model_validate(shown).model_dump()
    assert set(shown) == set(JobOut.model_fields)
    assert set(shown["counts"]) == {
        "items", "rejected", "duplicates", "cached", "to_submit", "submitted", "pending",
        "completed", "failed", "expired", "by_verdict",
    }  # fmt: skip
    assert shown["counts"]["by_verdict"] == {"live": 0, "unreachable": 0, "dead": 0, "retry": 0}


async def test_the_estimate_follows_the_deployments_ceiling(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    # The REST routes, the portal and the engine all take their pace from JobPace.of.
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client, [mx_number(i) for i in range(300)])
    slow = settings.model_copy(update={"upstream_max_rps": 1.0})
    fast = settings.model_copy(update={"upstream_max_rps": 100.0})
    assert JobPace.of(slow) == JobPace(ceiling_per_s=1.0)
    now = utc_now()
    async with transaction(sessions) as session:
        views = [
            await job_feature.find_job(session, client, job.public_id, JobPace.of(s), now)
            for s in (slow, fast)
        ]
    slow_finish, fast_finish = (view.estimated_finish_at for view in views)
    assert slow_finish is not None
    assert fast_finish is not None
    assert slow_finish > fast_finish
    await cancel_pending_tasks(sessions)


async def cancelled_with_its_event(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, client: int
) -> JobRow:
    """A job of three items, one a duplicate, cancelled before any was submitted: it is final at
    once, with its `job.completed` event."""
    job = await make_job(sessions, settings, client, [mx_number(0), mx_number(1), mx_number(0)])
    async with transaction(sessions) as session:
        view = await job_feature.move_job_by_client(
            session, client, job.public_id, JobMove.CANCEL, PACE, utc_now()
        )
    return view.job


async def test_a_finished_job_shows_the_counts_of_its_event_without_counting_its_items_again(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    job = await cancelled_with_its_event(sessions, settings, client)
    async with transaction(sessions) as session:
        kept = await job_feature.find_job(session, client, job.public_id, PACE, utc_now())
        event_counts = (
            await session.execute(
                text("SELECT data->'counts' FROM events WHERE job_pk = :j"), {"j": job.id}
            )
        ).scalar_one()
    assert kept.job.final_counts is not None
    assert kept.counts.as_json() == event_counts
    assert kept.counts.duplicates == 1
    assert kept.estimated_finish_at is None
    # A task of the job that appeared since (none can: its tasks are final) would change a
    # recount, not what the job shows.
    [task_pk] = await insert_tasks(sessions, client, [f"sim-ring-0-{job.public_id}"])
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET job_pk = :j, state = 'completed' WHERE id = :t"),
            {"j": job.id, "t": task_pk},
        )
        again = await job_feature.find_job(session, client, job.public_id, PACE, utc_now())
        recounted = await job_feature.job_view(
            session, replace(again.job, final_counts=None), PACE, utc_now()
        )
        [listed] = (
            await job_feature.list_jobs(
                session, client, state=None, before_id=None, size=10, pace=PACE, now=utc_now()
            )
        ).items
    assert again.counts == listed.counts == kept.counts
    assert (recounted.counts.submitted, kept.counts.submitted) == (1, 0)


async def test_a_finished_job_whose_items_are_rechecked_is_counted_at_each_read(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    # A re-check answers a final task again, so its verdicts may still change.
    client = await insert_client(sessions)
    job = await make_job(sessions, settings, client, [mx_number(2)])
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE check_jobs SET recheck = CAST(:policy AS jsonb) WHERE id = :j"),
            {"j": job.id, "policy": '{"verdicts": ["retry"], "after_s": 3600, "max": 1}'},
        )
        view = await job_feature.move_job_by_client(
            session, client, job.public_id, JobMove.CANCEL, PACE, utc_now()
        )
        events = (
            await session.execute(
                text("SELECT count(*) FROM events WHERE job_pk = :j"), {"j": job.id}
            )
        ).scalar_one()
    assert events == 1
    assert view.job.final_counts is None
    async with transaction(sessions) as session:
        read = await job_feature.find_job(session, client, job.public_id, PACE, utc_now())
    assert read.job.final_counts is None
