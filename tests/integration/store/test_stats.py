"""The store's facts behind the operations gauges (service/store/stats.py): tasks and
deliveries counted by state, and how far behind the due backlog runs."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.states import DeliveryState, TaskState
from service.store.db import transaction
from service.store.stats import read_store_stats
from tests.support.factories import emit_event, insert_client, insert_subscription, insert_tasks


async def test_new_tasks_and_deliveries_are_counted_and_the_due_backlog_ages(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    await insert_subscription(sessions, client_id, ["task.completed"])
    now = utc_now()
    async with transaction(sessions) as session:
        before = await read_store_stats(session, now)
    # Two tasks due a minute ago, one completed with its event and one delivery.
    await insert_tasks(
        sessions,
        client_id,
        [f"T-{secrets.token_hex(4)}", f"T-{secrets.token_hex(4)}"],
        now=now - timedelta(minutes=1),
    )
    await emit_event(sessions, client_id)
    async with transaction(sessions) as session:
        after = await read_store_stats(session, now)

    pending = TaskState.PENDING.value
    completed = TaskState.COMPLETED.value
    assert after.tasks_by_state[pending] == before.tasks_by_state[pending] + 2
    assert after.tasks_by_state[completed] == before.tasks_by_state[completed] + 1
    assert after.due_tasks == before.due_tasks + 2
    assert after.oldest_due_task_age_s >= 60.0
    waiting = DeliveryState.PENDING.value
    assert after.deliveries_by_state[waiting] == before.deliveries_by_state[waiting] + 1
    assert set(after.tasks_by_state) == {state.value for state in TaskState}
