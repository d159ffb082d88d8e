"""The store's facts behind the operations gauges (service/store/stats.py): tasks and
deliveries counted by state, how far behind the due backlog runs, and which subscriptions
fail."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.states import DeliveryState, TaskState
from service.store.db import transaction
from service.store.stats import FAILING_SUBSCRIPTIONS_SHOWN, read_store_stats
from tests.support.factories import emit_event, insert_client, insert_subscription, insert_tasks
from tests.support.jobs import mx_number
from tests.support.jobs_store import make_job


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


async def test_enabled_subscriptions_in_a_run_of_failures_are_listed_with_its_age(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    failing = await insert_subscription(sessions, client_id, ["task.completed"])
    disabled = await insert_subscription(sessions, client_id, ["task.completed"], enabled=False)
    deleted = await insert_subscription(sessions, client_id, ["task.completed"], deleted=True)
    healthy = await insert_subscription(sessions, client_id, ["task.completed"])
    now = utc_now()
    # Older than any run another test leaves behind, so the cap cannot leave these out.
    since = now - timedelta(days=3650)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE subscriptions SET failing_since = :since WHERE id = ANY(:ids)"),
            {"since": since, "ids": [failing, disabled, deleted]},
        )
        rows = await session.execute(
            text("SELECT id, public_id FROM subscriptions WHERE id = ANY(:ids)"),
            {"ids": [failing, disabled, deleted, healthy]},
        )
        public_ids: dict[int, str] = {row.id: row.public_id for row in rows}
        stats = await read_store_stats(session, now)

    shown = stats.failing_subscriptions_s
    assert shown[public_ids[failing]] == (now - since).total_seconds()
    for quiet in (disabled, deleted, healthy):
        assert public_ids[quiet] not in shown
    assert len(shown) <= FAILING_SUBSCRIPTIONS_SHOWN


async def test_job_items_not_submitted_yet_are_counted_waiting_or_on_standby(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    before = await _items_to_submit(sessions)
    client = await insert_client(sessions)
    await make_job(sessions, settings, client)  # three items, started: waiting
    await make_job(sessions, settings, client, [mx_number(7), mx_number(8)], start=False)
    after = await _items_to_submit(sessions)
    assert after["waiting"] - before["waiting"] == 3
    assert after["standby"] - before["standby"] == 2


async def _items_to_submit(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with transaction(sessions) as session:
        return (await read_store_stats(session, utc_now())).job_items_to_submit
