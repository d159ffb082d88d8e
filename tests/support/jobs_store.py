"""Check jobs made through the feature layer, for the store's and the engine's tests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.features import check_jobs as job_feature
from service.features.check_jobs import JobMedia, JobPace, JobSecrets
from service.store.check_jobs import JobRow
from service.store.db import transaction
from tests.support.jobs import mx_number

PACE = JobPace(ceiling_per_s=50.0)


async def make_job(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    client_id: int,
    numbers: list[str] | None = None,
    *,
    start: bool = True,
    now: datetime | None = None,
) -> JobRow:
    """A job of these numbers (three distinct ones by default), started unless `start` is
    false, created at `now` (the clock's by default)."""
    numbers = numbers if numbers is not None else [mx_number(i) for i in range(3)]
    body = "phone_number\n" + "\n".join(numbers) + "\n"
    async with transaction(sessions) as session:
        created = await job_feature.create_job(
            session,
            client_id,
            media=JobMedia.CSV,
            body=body.encode(),
            query=[] if start else [("start", "false")],
            idempotency_key=None,
            settings=settings,
            secrets=JobSecrets.of(settings),
            pace=PACE,
            now=now or utc_now(),
        )
    return created.view.job
