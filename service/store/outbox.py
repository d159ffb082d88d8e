"""The transactional outbox: a task's final state, its event and its deliveries, written together.

`record_events` runs inside the transaction that moves tasks to a final state (the worker's
write-back and the deadline sweep both call it), so an event exists exactly when its state does.
The unique constraint on events (task_pk, type) makes a second event for the same final state
impossible; ON CONFLICT DO NOTHING turns a duplicate into a no-op instead of an error. Each new
event gets one delivery per enabled, not deleted subscription of its client that wants its type,
due at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.ids import EVENT_PREFIX, new_public_id
from service.schemas import task_json
from service.store.tables import Task

EVENT_TYPE_OF_STATE = {
    "completed": "task.completed",
    "failed": "task.failed",
    "expired": "task.expired",
}

# One statement: the events (skipping any that exist), then the deliveries of the new ones only.
# Delivery ids are made in SQL because their number is only known there; they have the same shape
# as new_public_id("dlv") (128-bit random UUID, hex).
_RECORD_EVENTS = text(
    """
    WITH input AS (
        SELECT * FROM unnest(
            CAST(:public_ids AS text[]), CAST(:client_ids AS bigint[]),
            CAST(:task_pks AS bigint[]), CAST(:types AS text[]), CAST(:datas AS jsonb[])
        ) AS i(public_id, client_id, task_pk, type, data)
    ),
    new_events AS (
        INSERT INTO events (public_id, client_id, task_pk, type, data, created_at)
        SELECT public_id, client_id, task_pk, type, data, :now FROM input ORDER BY task_pk
        ON CONFLICT (task_pk, type) DO NOTHING
        RETURNING id, client_id, type
    ),
    new_deliveries AS (
        INSERT INTO deliveries
            (public_id, event_id, subscription_id, client_id, state, next_attempt_at, created_at)
        SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), e.id, s.id, e.client_id,
               'pending', :now, :now
        FROM new_events e
        JOIN subscriptions s
          ON s.client_id = e.client_id
         AND s.enabled
         AND s.deleted_at IS NULL
         AND e.type = ANY(s.event_types)
        ORDER BY e.id, s.id
        RETURNING id
    )
    SELECT id FROM new_events ORDER BY id
    """
)


async def record_events(
    session: AsyncSession, finished: Sequence[Task], now: datetime
) -> list[int]:
    """Insert the event of each task's final state and its deliveries; returns new event ids.

    `finished` are the tasks as they are after the change (their JSON is the event's data). Tasks
    in a non-final state are ignored; an event that already exists is left as it is.
    """
    rows = [task for task in finished if task.state in EVENT_TYPE_OF_STATE]
    if not rows:
        return []
    params: dict[str, Any] = {
        "public_ids": [new_public_id(EVENT_PREFIX) for _ in rows],
        "client_ids": [task.client_id for task in rows],
        "task_pks": [task.id for task in rows],
        "types": [EVENT_TYPE_OF_STATE[task.state] for task in rows],
        "datas": [orjson.dumps(task_json(task)).decode() for task in rows],
        "now": now,
    }
    result = await session.execute(_RECORD_EVENTS, params)
    return [int(row[0]) for row in result]
