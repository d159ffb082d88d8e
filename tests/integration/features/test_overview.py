"""The portal's overview of one client (service/features/overview.py): its tasks by state, the
upstream pause, its callbacks' record and the hours of its charts."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.callback_trust import CallbackRecord
from service.domain.states import TaskState
from service.features.overview import client_overview
from tests.support.factories import emit_event, insert_tasks

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
