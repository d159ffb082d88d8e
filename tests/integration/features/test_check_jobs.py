"""The check jobs feature (service/features/check_jobs.py) called directly, as the REST routes
and the portal call it: the job's JSON is the contract's shape (the one JobOut), and the estimate
follows the deployment's ceiling (a job's creation: test_check_job_creation.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.schemas import JobOut
from service.features import check_jobs as job_feature
from service.features.check_jobs import JobPace
from service.store.db import transaction
from tests.support.factories import insert_client
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
