"""The portal's overview of one client (service/features/overview.py): its tasks by state, the
upstream pause, its callbacks' record and the hours of its charts (by state and by verdict)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.callback_trust import CallbackRecord
from service.domain.states import TaskState
from service.domain.verdicts import Verdict
from service.features.overview import client_overview
from service.store.db import transaction
from tests.support.factories import emit_event, insert_client, insert_tasks

pytestmark = pytest.mark.usefixtures("flush_redis")


async def test_the_overview_counts_this_clients_tasks_and_charts_its_hours(
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    redis_client: Redis[Any],
    client_id: int,
) -> None:
    await insert_tasks(sessions, client_id, [f"T-{secrets.token_hex(4)}" for _ in range(2)])
    await emit_event(sessions, client_id)

    overview = await client_overview(
        session, redis_client, client_id, utc_now() - timedelta(hours=24)
    )

    counts = dict(overview.counts)
    assert (counts[TaskState.PENDING], counts[TaskState.COMPLETED]) == (2, 1)
    assert [state for state, _ in overview.counts] == list(TaskState)
    assert overview.pause is None
    assert overview.callbacks == CallbackRecord()
    assert [(row.state, row.n) for row in overview.finished] == [(TaskState.COMPLETED, 1)]


async def _finish(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    finished: list[tuple[str, str | None]],
    at: datetime,
) -> None:
    """Tasks of this client that reached a final state at `at`: `completed` with the
    phone_status given, or another state without a result (None)."""
    ids = await insert_tasks(sessions, client_id, [f"T-{secrets.token_hex(4)}" for _ in finished])
    async with transaction(sessions) as session:
        for pk, (state, phone_status) in zip(ids, finished, strict=True):
            await session.execute(
                text(
                    "UPDATE tasks SET state = :state, next_poll_at = NULL,"
                    " completed_at = :at,"
                    " result = CASE WHEN CAST(:s AS text) IS NULL THEN NULL ELSE"
                    " jsonb_build_object('phone_number', '0062****', 'phone_status', :s) END"
                    " WHERE id = :pk"
                ),
                {"state": state, "s": phone_status, "at": at, "pk": pk},
            )


async def test_the_overview_counts_completed_tasks_by_verdict_per_hour(
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    redis_client: Redis[Any],
    client_id: int,
) -> None:
    now = utc_now()
    await _finish(
        sessions,
        client_id,
        [
            ("completed", "ring"),
            ("completed", "busy"),
            ("completed", "temp_unavailable"),
            ("completed", "voicemail"),
            ("expired", None),
        ],
        now,
    )
    await _finish(sessions, client_id, [("completed", "empty")], now - timedelta(hours=3))
    await _finish(sessions, client_id, [("completed", "ring")], now - timedelta(hours=30))
    await _finish(sessions, await insert_client(sessions), [("completed", "ring")], now)

    overview = await client_overview(session, redis_client, client_id, now - timedelta(hours=24))

    this_hour = now.replace(minute=0, second=0, microsecond=0)
    counted = {(row.hour, row.verdict): row.n for row in overview.verdicts}
    assert counted == {
        (this_hour, Verdict.LIVE): 2,
        (this_hour, Verdict.RETRY): 1,
        (this_hour, None): 1,
        ((now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0), Verdict.DEAD): 1,
    }
