"""Creating a check job (service/features/check_job_creation.py) called directly, as the REST
route and the portal's upload call it: a large list is created whole in one transaction, a body
held already (the portal's upload) over 16 MiB is refused, and two requests racing with one
Idempotency-Key make one job."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.job_input import JOB_BODY_MAX_BYTES
from service.features.check_job_creation import CreatedJob, JobMedia, JobSecrets, create_job
from service.features.errors import BodyTooLarge
from service.store.db import transaction
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE
from tests.support.rows import cancel_pending_tasks


async def create(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    client_id: int,
    body: bytes,
    key: str | None = None,
) -> CreatedJob:
    async with transaction(sessions) as session:
        return await create_job(
            session,
            client_id,
            media=JobMedia.CSV,
            body=body,
            query=[("start", "false")],
            idempotency_key=key,
            settings=settings,
            secrets=JobSecrets.of(settings),
            pace=PACE,
            now=utc_now(),
        )


def csv_of(count: int) -> bytes:
    return ("phone_number\n" + "\n".join(mx_number(i) for i in range(count)) + "\n").encode()


async def test_a_large_list_is_created_whole(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await cancel_pending_tasks(sessions)
    client = await insert_client(sessions)
    created = await create(sessions, settings, client, csv_of(20_000))
    assert created.view.counts.to_submit == 20_000
    async with transaction(sessions) as session:
        items, submits = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM check_job_items WHERE job_pk = :j), "
                    "(SELECT count(*) FROM scheduled_submits WHERE job_pk = :j "
                    " AND state = 'standby' AND phone_number_sealed IS NOT NULL)"
                ),
                {"j": created.view.job.id},
            )
        ).one()
    assert (items, submits) == (20_000, 20_000)
    await cancel_pending_tasks(sessions)


async def test_a_held_body_over_16_mib_is_refused_and_writes_nothing(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    with pytest.raises(BodyTooLarge):
        await create(sessions, settings, client, b"phone_number\n" + b"5" * JOB_BODY_MAX_BYTES)
    async with transaction(sessions) as session:
        jobs = (
            await session.execute(
                text("SELECT count(*) FROM check_jobs WHERE client_id = :c"), {"c": client}
            )
        ).scalar_one()
    assert jobs == 0


async def test_two_requests_racing_with_one_key_make_one_job(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    first, second = await asyncio.gather(
        create(sessions, settings, client, csv_of(50), key="race"),
        create(sessions, settings, client, csv_of(50), key="race"),
    )
    assert first.view.job.id == second.view.job.id
    assert sorted([first.created, second.created]) == [False, True]
