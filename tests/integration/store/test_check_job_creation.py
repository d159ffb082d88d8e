"""A check job's creation as stored (service/store/check_job_creation.py) on the real PostgreSQL:
the job row once per Idempotency-Key, and its items, rejections and scheduled submits written by
COPY in the caller's transaction, read back as written."""

from __future__ import annotations

import secrets

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.job_lifecycle import JobStatus
from service.domain.job_plan import JobCounts
from service.domain.public_ids import JOB_PREFIX, new_public_id
from service.domain.states import JobItemState, JobState, ScheduledSubmitState
from service.store.check_job_creation import (
    ANALYZE_FROM_ITEMS,
    ItemColumns,
    NewJob,
    RejectionColumns,
    SubmitColumns,
    insert_item_submits,
    insert_items,
    insert_job,
    insert_rejections,
    refresh_item_statistics,
)
from service.store.check_job_results import rejection_page, result_page
from service.store.db import transaction
from tests.support.factories import insert_client


def new_job(client_id: int, key: str | None) -> NewJob:
    return NewJob(
        public_id=new_public_id(JOB_PREFIX),
        client_id=client_id,
        name="stored whole",
        status=JobStatus(JobState.DRAFT),
        max_age_s=0,
        recheck_json=None,
        idempotency_key=key,
        fingerprint=b"\x01" * 32 if key is not None else None,
        counts=JobCounts(items=2, rejected=1, duplicates=0, cached=0),
        now=utc_now(),
    )


async def test_a_job_is_written_once_per_idempotency_key(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    key = f"list-{secrets.token_hex(4)}"
    async with transaction(sessions) as session:
        first = await insert_job(session, new_job(client_id, key))
        again = await insert_job(session, new_job(client_id, key))
        unkeyed = [await insert_job(session, new_job(client_id, None)) for _ in range(2)]
    assert first is not None
    assert (first.state, first.idempotency_key, first.started_at) == (JobState.DRAFT, key, None)
    assert first.planned == JobCounts(items=2, rejected=1, duplicates=0, cached=0)
    assert again is None
    assert all(job is not None for job in unkeyed)


async def test_items_rejections_and_submits_are_read_back_as_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    items = ItemColumns()
    items.add(1, JobItemState.WAITING, "a", None, "+52 55 **** 0001", b"d1" * 16, None, None)
    items.add(3, JobItemState.WAITING, None, '{"k": 1}', "+52 55 **** 0003", b"d3" * 16, None, None)
    rejections = RejectionColumns(lines=[2], references=["b"], details=["phone_number: bad"])
    submits = SubmitColumns(lines=[1, 3], sealed=[b"sealed-1", b"sealed-3"])
    now = utc_now()
    async with transaction(sessions) as session:
        job = await insert_job(session, new_job(client_id, None))
        assert job is not None
        await insert_items(session, job.id, items)
        await insert_rejections(session, job.id, rejections)
        await insert_item_submits(
            session, job, submits, state=ScheduledSubmitState.STANDBY, now=now
        )
    async with transaction(sessions) as session:
        rows = await result_page(session, job.id, after_line=0, limit=10)
        rejected = await rejection_page(session, job.id, after_line=0, limit=10)
        stored = (
            await session.execute(
                text(
                    "SELECT job_line, state, phone_number_sealed, due_at, client_id "
                    "FROM scheduled_submits WHERE job_pk = :j ORDER BY job_line"
                ),
                {"j": job.id},
            )
        ).all()
    assert [(r.line, r.reference, r.phone_number_masked, r.state) for r in rows] == [
        (1, "a", "+52 55 **** 0001", "waiting"),
        (3, None, "+52 55 **** 0003", "waiting"),
    ]
    assert [(r.line, r.reference, r.detail) for r in rejected] == [(2, "b", "phone_number: bad")]
    assert [tuple(row) for row in stored] == [
        (1, "standby", b"sealed-1", None, client_id),
        (3, "standby", b"sealed-3", None, client_id),
    ]


async def reltuples(session: AsyncSession) -> float:
    """What the planner believes check_job_items holds (-1: never analyzed)."""
    found = await session.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = 'check_job_items'::regclass")
    )
    return float(found.scalar_one())


async def test_a_large_jobs_items_are_analyzed_in_its_transaction_and_a_small_ones_are_not(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        job = await insert_job(session, new_job(client_id, None))
        assert job is not None
        items = ItemColumns()
        for line in range(1, ANALYZE_FROM_ITEMS + 1):
            items.add(
                line, JobItemState.WAITING, None, None, "+52 55 **** 0001", b"d" * 32, None, None
            )
        await insert_items(session, job.id, items)
        # One short of the threshold: nothing analyzed, the belief is what it was.
        believed = await reltuples(session)
        await refresh_item_statistics(session, ANALYZE_FROM_ITEMS - 1)
        assert await reltuples(session) == believed
        await refresh_item_statistics(session, ANALYZE_FROM_ITEMS)
        held = (await session.execute(text("SELECT count(*) FROM check_job_items"))).scalar_one()
        # ANALYZE counts the transaction's own rows: the planner now knows the job is there.
        analyzed = await reltuples(session)
        assert analyzed >= 0.9 * held
        assert analyzed - believed >= 0.9 * ANALYZE_FROM_ITEMS
