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
    ItemColumns,
    NewJob,
    RejectionColumns,
    SubmitColumns,
    insert_item_submits,
    insert_items,
    insert_job,
    insert_rejections,
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
