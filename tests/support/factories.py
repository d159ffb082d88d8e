"""Rows the tests start from: clients with API keys, tasks, subscriptions and events, written as
the service would write them (through its own functions where it has one, in SQL where the
engine would)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.public_ids import EVENT_PREFIX, new_public_id
from service.domain.states import EventType
from service.features.keys import ClientLimits, create_client_and_key, list_keys, set_limits
from service.store.db import transaction
from service.store.outbox import FinishedTask, record_events
from service.store.subscriptions import SubscriptionRow
from service.store.subscriptions import insert_subscription as store_subscription
from service.store.tables.tasks import Task
from tests.support.api import bearer

# --- clients and their keys ---------------------------------------------------------------------


async def new_key(settings: Settings) -> str:
    return await create_client_and_key(settings, f"client-{secrets.token_hex(4)}")


@dataclass(frozen=True)
class ApiClient:
    """One phonebridge client: its id and its API key's headers."""

    id: int
    headers: dict[str, str]


async def client_and_key(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], name: str
) -> tuple[int, str]:
    """A client named `name` with an API key, made as `phonebridge api-key create` makes them:
    its id and its key."""
    key = await create_client_and_key(settings, name)
    async with sessions() as session:
        client_id = (
            await session.execute(text("SELECT id FROM clients WHERE name = :n"), {"n": name})
        ).scalar_one()
    return int(client_id), key


async def new_client(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> ApiClient:
    client_id, key = await client_and_key(settings, sessions, f"webhooks-{secrets.token_hex(4)}")
    return ApiClient(client_id, bearer(key))


async def insert_client(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with transaction(sessions) as session:
        result = await session.execute(
            text("INSERT INTO clients (name) VALUES (:name) RETURNING id"),
            {"name": f"engine-test-{secrets.token_hex(4)}"},
        )
        return int(result.scalar_one())


# --- tasks and subscriptions --------------------------------------------------------------------


async def insert_tasks(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    task_ids: Sequence[str],
    *,
    ttl_s: float = 30.0,
    now: datetime | None = None,
    next_poll_in_s: float = 0.0,
) -> list[int]:
    """Tasks as registration leaves them: pending, due at once, expiring `ttl_s` from now."""
    now = now or utc_now()
    async with transaction(sessions) as session:
        result = await session.execute(
            text(
                """
                INSERT INTO tasks (client_id, task_id, state, submitted_at, registered_at,
                                   expires_at, next_poll_at, poll_count, updated_at)
                SELECT :client_id, t, 'pending', :now, :now, :expires_at, :next_poll_at, 0, :now
                FROM unnest(CAST(:task_ids AS text[])) AS t
                RETURNING id
                """
            ),
            {
                "client_id": client_id,
                "task_ids": list(task_ids),
                "now": now,
                "expires_at": now + timedelta(seconds=ttl_s),
                "next_poll_at": now + timedelta(seconds=next_poll_in_s),
            },
        )
        return sorted(int(row[0]) for row in result)


async def register_task(api: httpx.AsyncClient, key: str, task_id: str) -> dict[str, Any]:
    response = await api.post("/v1/tasks", json={"task_id": task_id}, headers=bearer(key))
    assert response.status_code == 201
    task: dict[str, Any] = response.json()
    return task


async def insert_subscription(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    event_types: Sequence[str],
    *,
    enabled: bool = True,
    deleted: bool = False,
) -> int:
    async with transaction(sessions) as session:
        result = await session.execute(
            text(
                """
                INSERT INTO subscriptions (public_id, client_id, url, event_types, enabled,
                                           secret_encrypted, deleted_at)
                VALUES (:public_id, :client_id, 'https://example.com/hook',
                        CAST(:types AS varchar(32)[]), :enabled, '\\x00',
                        CASE WHEN :deleted THEN now() END)
                RETURNING id
                """
            ),
            {
                "public_id": f"sub_{secrets.token_hex(16)}",
                "client_id": client_id,
                "types": list(event_types),
                "enabled": enabled,
                "deleted": deleted,
            },
        )
        return int(result.scalar_one())


async def subscribe(session: AsyncSession, client_id: int) -> SubscriptionRow:
    """A subscription to task.completed written through the store, in the caller's transaction."""
    return await store_subscription(
        session,
        client_id=client_id,
        public_id=f"sub_{secrets.token_hex(16)}",
        url="https://example.com/hook",
        event_types=[EventType.TASK_COMPLETED],
        description="",
        secret_encrypted=b"\x00",
        now=utc_now(),
    )


# --- events -------------------------------------------------------------------------------------

INSERT_EVENT = """
    INSERT INTO events (public_id, client_id, task_pk, type, data)
    SELECT :public_id, t.client_id, t.id, 'task.completed', CAST(:data AS jsonb)
    FROM tasks t JOIN api_keys k ON k.client_id = t.client_id
    WHERE k.key_hash = :key_hash AND t.task_id = :task_id
"""


def event_params(key: str, task: dict[str, Any]) -> dict[str, Any]:
    return {
        "public_id": new_public_id(EVENT_PREFIX),
        "key_hash": hashlib.sha256(key.encode()).digest(),
        "task_id": task["task_id"],
        "data": orjson.dumps(task).decode(),
    }


async def insert_event(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], key: str, task_id: str
) -> str:
    """Register a task and write a task.completed event for it; returns the event id."""
    params = event_params(key, await register_task(api, key, task_id))
    async with sessions() as session, session.begin():
        await session.execute(text(INSERT_EVENT), params)
    public_id: str = params["public_id"]
    return public_id


async def emit_event(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    state: str = "completed",
    task_id: str | None = None,
) -> str:
    """A task reaching a final state, recorded through the engine's outbox (event + deliveries);
    returns the event's public id."""
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        task = Task(
            client_id=client_id,
            task_id=task_id or f"T-{secrets.token_hex(6)}",
            state=state,
            result={"phone_number": "0062********", "phone_status": "ring"}
            if state == "completed"
            else None,
            metadata_={"order": "A-17"},
            submitted_at=now,
            registered_at=now,
            expires_at=now + timedelta(days=1),
            completed_at=now,
            poll_count=1,
        )
        session.add(task)
        await session.flush()
        [event_pk] = await record_events(session, [FinishedTask.of(task)], now)
        public_id = (
            await session.execute(
                text("SELECT public_id FROM events WHERE id = :i"), {"i": event_pk}
            )
        ).scalar_one()
    return str(public_id)


async def limited_key(settings: Settings, **limits: int | None) -> tuple[str, str]:
    """A new client with these limits of its own (as `phonebridge api-key limits` sets them);
    its key and its name."""
    key = await new_key(settings)
    name = (await list_keys(settings, None))[-1].client_name
    await set_limits(settings, name, ClientLimits(**limits))
    return key, name
