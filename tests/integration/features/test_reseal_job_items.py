"""`phonebridge secret-key reseal` (service/features/reseal.py) and the numbers of check job items
not yet submitted, kept sealed in their scheduled submits: after a rotation and a reseal none is
left under the old key, so a job started once the old key is dropped still submits each line's
own number; one under a key no longer listed is named (its job and line) and left as it is."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.job_lifecycle import JobMove
from service.engine.job_items import JobItemSubmitter
from service.features import check_jobs as job_feature
from service.features.reseal import reseal_kept_secrets
from service.sealed_numbers import job_item_binding, number_seal_for
from service.sim.server import SimServer
from service.store.db import create_engine_for, session_factory, transaction
from service.store.job_items import load_claimed_items
from service.store.migrate import upgrade_to_head
from service.store.scheduled_submits import claim_due_submits
from service.upstream.client import UpstreamClient
from service.upstream.reaction import UpstreamReaction
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import PACE, make_job
from tests.support.settings import engine_settings

pytestmark = pytest.mark.usefixtures("flush_redis")

OLD = "the-old-secret-key-of-this-deployment"
NEW = "the-new-secret-key-of-this-deployment"
STRANGER = "a-secret-key-nobody-listed-anywhere"
LINES = {1: 11, 2: 22, 3: 33}  # line: mx_number's index


def digits(index: int) -> str:
    return f"5255{index:08d}"


async def kept_numbers(
    sessions: async_sessionmaker[AsyncSession], job_pk: int
) -> dict[int, bytes | None]:
    """The job's sealed numbers by line, as stored in its scheduled submits."""
    async with transaction(sessions) as session:
        rows = await session.execute(
            text(
                "SELECT job_line, phone_number_sealed FROM scheduled_submits "
                "WHERE job_pk = :pk ORDER BY job_line"
            ),
            {"pk": job_pk},
        )
        return {int(line): None if sealed is None else bytes(sealed) for line, sealed in rows}


async def submitted_task_ids(
    sessions: async_sessionmaker[AsyncSession], job_pk: int
) -> dict[int, str]:
    async with transaction(sessions) as session:
        rows = await session.execute(
            text(
                "SELECT i.line, t.task_id FROM check_job_items AS i JOIN tasks AS t "
                "ON t.id = i.task_pk WHERE i.job_pk = :pk"
            ),
            {"pk": job_pk},
        )
        return {int(line): str(task_id) for line, task_id in rows}


async def submit_claimed(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: Redis[Any]
) -> list[str]:
    """One claim of due submits, submitted by the job items' engine under `settings`' keys."""
    now = utc_now()
    async with transaction(sessions) as session:
        token, ids = await claim_due_submits(session, now, lease_s=30, limit=10)
        items = await load_claimed_items(session, ids, token, now)
    upstream = UpstreamClient(settings)
    seal = number_seal_for(settings)
    submitter = JobItemSubmitter(
        settings,
        sessions,
        upstream,
        UpstreamReaction.from_settings(redis, settings),
        lambda: seal,
        lease=timedelta(seconds=10),
    )
    try:
        return await submitter.submit_items(items, token, utc_now())
    finally:
        await upstream.aclose()


async def test_a_job_sealed_before_a_rotation_submits_its_own_numbers_after_the_reseal(
    empty_database: str, redis_url: str, fresh_sim: SimServer, redis_client: Redis[Any]
) -> None:
    upgrade_to_head(empty_database)
    fresh_sim.control.configure(submit_script="ring-1")
    url = fresh_sim.base_url
    before = engine_settings(empty_database, redis_url, url, secret_key=OLD)
    rotated = engine_settings(
        empty_database, redis_url, url, secret_key=NEW, secret_key_previous=OLD
    )
    only_new = engine_settings(empty_database, redis_url, url, secret_key=NEW)
    engine = create_engine_for(before.sqlalchemy_url, pool_size=2)
    sessions = session_factory(engine)
    try:
        client_id = await insert_client(sessions)
        numbers = [mx_number(index) for index in LINES.values()]
        # Drafts: their numbers wait, sealed, for a start that comes after the rotation.
        job = await make_job(sessions, before, client_id, numbers, start=False)
        lost = await make_job(
            sessions,
            engine_settings(empty_database, redis_url, url, secret_key=STRANGER),
            client_id,
            [mx_number(44)],
            start=False,
        )
        lost_before = await kept_numbers(sessions, lost.id)
        new_seal = number_seal_for(only_new)
        sealed_before = await kept_numbers(sessions, job.id)
        assert sorted(sealed_before) == sorted(LINES)

        report = await reseal_kept_secrets(rotated)

        counts = report.job_item_numbers
        assert (counts.resealed, counts.current, counts.changed) == (3, 0, 0)
        assert counts.unreadable == [f"item 1 of job {lost.public_id} (client {client_id})"]
        # Nothing of the job is left under the old key: each number opens under the new key
        # alone, for its own line.
        for line, sealed in (await kept_numbers(sessions, job.id)).items():
            assert sealed is not None
            assert sealed != sealed_before[line]
            binding = job_item_binding(client_id, job.public_id, line)
            assert new_seal.open(sealed, binding) == digits(LINES[line])
        assert await kept_numbers(sessions, lost.id) == lost_before
        again = await reseal_kept_secrets(rotated)
        assert (again.job_item_numbers.resealed, again.job_item_numbers.current) == (0, 3)

        # Later, the old key dropped: the job starts and each line's own number goes upstream.
        async with transaction(sessions) as session:
            await job_feature.move_job_by_client(
                session, client_id, job.public_id, JobMove.START, PACE, utc_now()
            )
        outcomes = await submit_claimed(only_new, sessions, redis_client)

        assert outcomes == ["submitted"] * 3
        task_ids = await submitted_task_ids(sessions, job.id)
        assert {
            line: fresh_sim.control.task(task_id)["phone_number"]
            for line, task_id in task_ids.items()
        } == {line: digits(index) for line, index in LINES.items()}
        # Submitted: the numbers are erased.
        assert set((await kept_numbers(sessions, job.id)).values()) == {None}
    finally:
        await engine.dispose()
