"""The deadline sweep (service/store/deadline_sweep.py) against the real database: overdue tasks
expire once, with their events, even under concurrent sweeps; a live lease is left alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.store.db import transaction
from service.store.deadline_sweep import expire_overdue_tasks
from tests.support.factories import insert_client, insert_subscription, insert_tasks
from tests.support.rows import events_of, task_json_in_store, tasks_of


async def test_sweep_expires_overdue_tasks_with_their_events(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    await insert_subscription(sessions, client, ["task.expired"])
    now = utc_now()
    await insert_tasks(
        sessions, client, ["old1", "old2"], now=now - timedelta(seconds=40), ttl_s=30
    )
    await insert_tasks(sessions, client, ["young"], now=now, ttl_s=30)
    [leased] = await insert_tasks(
        sessions, client, ["leased"], now=now - timedelta(seconds=40), ttl_s=30
    )
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET lease_token = :t, lease_until = :u WHERE id = :id"),
            {"t": uuid.uuid4(), "u": now + timedelta(seconds=5), "id": leased},
        )
    async with transaction(sessions) as session:
        expired = await expire_overdue_tasks(session, now, limit=500)
    assert {"old1", "old2"} <= {t.task_id for t in expired}
    rows = await tasks_of(sessions, client)
    assert rows["old1"]["state"] == "expired"
    assert rows["old1"]["completed_at"] == now
    assert rows["old1"]["next_poll_at"] is None
    assert rows["young"]["state"] == "pending"
    assert rows["leased"]["state"] == "pending", "a live lease is left to its worker"
    events = await events_of(sessions, client)
    assert sorted(e["data"]["task_id"] for e in events) == ["old1", "old2"]
    assert {e["type"] for e in events} == {"task.expired"}
    assert all(e["data"]["state"] == "expired" for e in events)
    async with sessions() as session:
        count = (
            await session.execute(
                text("SELECT count(*) FROM deliveries WHERE client_id = :c"), {"c": client}
            )
        ).scalar_one()
    assert count == 2


async def test_concurrent_sweeps_expire_each_task_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    await insert_tasks(
        sessions, client, [f"e{i}" for i in range(300)], now=now - timedelta(seconds=40), ttl_s=30
    )

    async def sweep() -> int:
        total = 0
        while True:
            async with transaction(sessions) as session:
                batch = await expire_overdue_tasks(session, now, limit=25)
            total += len(batch)
            if not batch:
                return total

    await asyncio.gather(sweep(), sweep(), sweep())
    events = await events_of(sessions, client)
    assert len(events) == 300
    assert len({e["task_pk"] for e in events}) == 300


async def test_expired_event_data_is_the_task_json_of_the_row_as_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(
        sessions, client, ["late"], now=now - timedelta(seconds=40), ttl_s=30
    )
    async with transaction(sessions) as session:
        await expire_overdue_tasks(session, now, limit=500)
    [event] = await events_of(sessions, client)
    assert event["data"] == await task_json_in_store(sessions, task)
    assert event["data"]["state"] == "expired"
