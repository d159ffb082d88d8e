"""What the database holds for a client, read back as the tests check it; and what earlier tests
left pending, put out of the way of the next one."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.store.db import transaction
from service.store.outbox import task_json
from service.store.tables.tasks import Task


async def tasks_of(
    sessions: async_sessionmaker[AsyncSession], client_id: int
) -> dict[str, dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(
            text("SELECT * FROM tasks WHERE client_id = :c ORDER BY id"), {"c": client_id}
        )
        return {row.task_id: dict(row._mapping) for row in result}


async def events_of(
    sessions: async_sessionmaker[AsyncSession], client_id: int
) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(
            text("SELECT * FROM events WHERE client_id = :c ORDER BY id"), {"c": client_id}
        )
        return [dict(row._mapping) for row in result]


async def task_json_in_store(sessions: async_sessionmaker[AsyncSession], task_pk: int) -> Any:
    """The task's contract JSON as the API would show it, from the ORM row."""
    async with sessions() as session:
        task = await session.get(Task, task_pk)
        assert task is not None
        return orjson.loads(orjson.dumps(task_json(task)))


async def deliveries_of_event(
    sessions: async_sessionmaker[AsyncSession], event_id: str
) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(
            text(
                """
                SELECT d.*, s.public_id AS subscription_public_id FROM deliveries d
                JOIN events e ON e.id = d.event_id JOIN subscriptions s ON s.id = d.subscription_id
                WHERE e.public_id = :e ORDER BY d.id
                """
            ),
            {"e": event_id},
        )
        return [dict(row._mapping) for row in result]


async def cancel_pending_tasks(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Cancel every pending task of the run's database (cancelled tasks are never polled, and
    their re-checks never submitted, as a client's cancel does)."""
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE tasks SET state = 'cancelled', completed_at = now(), next_poll_at = NULL,"
                " lease_token = NULL, lease_until = NULL WHERE state = 'pending'"
            )
        )
        await session.execute(
            text(
                "UPDATE scheduled_submits SET state = 'done', phone_number_sealed = NULL,"
                " lease_token = NULL, lease_until = NULL"
                " WHERE state IN ('standby', 'waiting', 'submitting')"
            )
        )
