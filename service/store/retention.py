"""Retention: finished tasks older than PHONEBRIDGE_RETENTION_DAYS go, with their events,
deliveries and attempts (the foreign keys cascade from tasks down to delivery_attempts); so do
the events about subscriptions (`subscription.disabled`) older than that, with their deliveries.

"Older than" is `completed_at < cutoff`; pending tasks are never purged, and neither is a
finished task whose webhook is still being delivered (a redelivered old event, say): it goes
once that delivery ends. Each call deletes one small batch in its caller's transaction, so no
lock is held for long, and SKIP LOCKED lets it step around rows someone else is writing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.states import DeliveryState, TaskState

# Only one purger at a time: a second would just compete for the same rows.
RETENTION_LOCK_ID: Final = 0x70625F726574  # "pb_ret"

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:lock_id)")

# The candidates come from the partial index ix_tasks_finished_completed_at.
_PURGE_FINISHED = text(
    f"""
    DELETE FROM tasks WHERE id IN (
        SELECT t.id FROM tasks t
        WHERE t.state <> '{TaskState.PENDING}' AND t.completed_at < :cutoff
          AND NOT EXISTS (
              SELECT 1 FROM events e JOIN deliveries d ON d.event_id = e.id
              WHERE e.task_pk = t.id AND d.state = '{DeliveryState.PENDING}'
          )
        ORDER BY t.completed_at
        LIMIT :limit
        FOR UPDATE OF t SKIP LOCKED
    )
    """  # noqa: S608 - only enum values are interpolated
)


# The candidates come from the partial index ix_events_subscription_created_at (few rows).
_PURGE_SUBSCRIPTION_EVENTS = text(
    f"""
    DELETE FROM events WHERE id IN (
        SELECT e.id FROM events e
        WHERE e.subscription_pk IS NOT NULL AND e.created_at < :cutoff
          AND NOT EXISTS (
              SELECT 1 FROM deliveries d
              WHERE d.event_id = e.id AND d.state = '{DeliveryState.PENDING}'
          )
        ORDER BY e.created_at
        LIMIT :limit
        FOR UPDATE OF e SKIP LOCKED
    )
    """  # noqa: S608 - only enum values are interpolated
)


async def take_retention_turn(session: AsyncSession) -> bool:
    """True when this transaction is the only purger; the turn ends with the transaction."""
    result = await session.execute(_TRY_LOCK, {"lock_id": RETENTION_LOCK_ID})
    return bool(result.scalar_one())


async def purge_finished_tasks(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` tasks that finished before `cutoff`, with everything hanging off
    them; returns how many tasks went."""
    result = await session.execute(_PURGE_FINISHED, {"cutoff": cutoff, "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def purge_subscription_events(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` events about subscriptions created before `cutoff` (none with a
    delivery still pending), with their deliveries; returns how many events went."""
    result = await session.execute(_PURGE_SUBSCRIPTION_EVENTS, {"cutoff": cutoff, "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]
