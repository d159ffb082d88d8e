"""A check job's result rows as stored (service/store/check_job_results.py) on the real
PostgreSQL: streamed from a server-side cursor in input order and in batches of the fetch size,
a duplicate shown with its first line's mask, and the job's progress (service/store/
check_jobs.py) counted from the same items; and its rejections paged by line."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.store import check_job_results as result_store
from service.store import check_jobs as job_store
from service.store.db import transaction
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import make_job


async def test_results_stream_in_input_order_in_batches_of_the_fetch_size(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    numbers = [mx_number(100 + i) for i in range(7)] + [mx_number(100)]
    job = await make_job(sessions, settings, client, numbers, start=False)
    async with transaction(sessions) as session:
        batches = [
            batch async for batch in result_store.stream_results(session, job.id, rows_per_fetch=3)
        ]
        progress = await job_store.job_progress(session, job.id, utc_now())
    assert [len(batch) for batch in batches] == [3, 3, 2]
    rows = [row for batch in batches for row in batch]
    assert [row.line for row in rows] == list(range(1, 9))
    assert [row.state for row in rows] == ["waiting"] * 8
    assert rows[7].phone_number_masked == rows[0].phone_number_masked
    assert progress.waiting == 7
    assert progress.tasks_by_state == {}


async def test_rejections_are_paged_by_line(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await insert_client(sessions)
    numbers = [mx_number(200), "not a number", mx_number(201), "555", "nor this"]
    job = await make_job(sessions, settings, client, numbers, start=False)
    async with transaction(sessions) as session:
        first = await result_store.rejection_page(session, job.id, after_line=0, limit=2)
        rest = await result_store.rejection_page(
            session, job.id, after_line=first[-1].line, limit=2
        )
    assert [row.line for row in first] == [2, 4]
    assert [row.line for row in rest] == [5]
    assert all(row.reference is None and row.detail for row in first + rest)
    assert first[0].as_json() == {"line": 2, "reference": None, "detail": first[0].detail}
