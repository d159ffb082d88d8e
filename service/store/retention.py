"""Retention: finished tasks older than PHONEBRIDGE_RETENTION_DAYS go, with their events,
deliveries and attempts (the foreign keys cascade from tasks down to delivery_attempts); so do
the events about subscriptions (`subscription.disabled`) older than that, with their deliveries;
and so do check jobs that finished (completed or cancelled) before that, with their items,
rejections, scheduled submits and `job.completed` event.

"Older than" is `completed_at < cutoff`; pending tasks are never purged, and neither is a
finished task whose webhook is still being delivered (a redelivered old event, say): it goes
once that delivery ends. Each call deletes one small batch in its caller's transaction, so no
lock is held for long, and SKIP LOCKED lets it step around rows someone else is writing.

A job of 100,000 items is not deleted in one statement (its cascade would): each batch deletes
at most `limit` of its items, rejections and submits, and the job row goes in the batch that
finds none left. A job waits for its last task (`tasks.job_pk`, which retention purges first,
by the same cutoff) and for its `job.completed` deliveries, so deleting it never updates many
task rows through their foreign key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.states import DeliveryState, JobState, TaskState

# Only one purger at a time: a second would just compete for the same rows.
RETENTION_LOCK_ID: Final = 0x70625F726574  # "pb_ret"

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


# A scan of check_jobs, which has one row per list (not per number): few next to tasks.
_OLD_JOBS = text(
    f"""
    SELECT j.id FROM check_jobs j
    WHERE j.state IN ('{JobState.COMPLETED}', '{JobState.CANCELLED}') AND j.finished_at < :cutoff
      AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.job_pk = j.id)
      AND NOT EXISTS (
          SELECT 1 FROM events e JOIN deliveries d ON d.event_id = e.id
          WHERE e.job_pk = j.id AND d.state = '{DeliveryState.PENDING}'
      )
    ORDER BY j.finished_at
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED
    """  # noqa: S608 - only enum values are interpolated
)

# Each through the index that starts with job_pk (the primary keys, the submits' unique key).
_JOB_PARTS: Final = tuple(
    text(
        f"""
        DELETE FROM {table} WHERE ({job_pk}, {line}) IN (
            SELECT {job_pk}, {line} FROM {table}
            WHERE {job_pk} = ANY(CAST(:jobs AS bigint[]))
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
        )
        """  # noqa: S608 - only fixed names are interpolated
    )
    for table, job_pk, line in (
        ("check_job_items", "job_pk", "line"),
        ("check_job_rejections", "job_pk", "line"),
        ("scheduled_submits", "job_pk", "job_line"),
    )
)

# The jobs whose parts are all gone; the cascade takes their job.completed event and its
# deliveries.
_EMPTY_JOBS = text(
    """
    DELETE FROM check_jobs j
    WHERE j.id = ANY(CAST(:jobs AS bigint[]))
      AND NOT EXISTS (SELECT 1 FROM check_job_items i WHERE i.job_pk = j.id)
      AND NOT EXISTS (SELECT 1 FROM check_job_rejections r WHERE r.job_pk = j.id)
      AND NOT EXISTS (SELECT 1 FROM scheduled_submits s WHERE s.job_pk = j.id)
    """
)


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


async def purge_finished_jobs(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` rows of the check jobs that finished before `cutoff` (items, then
    rejections, then submits), and the jobs left with none; returns how many rows went (jobs
    included)."""
    jobs = list((await session.execute(_OLD_JOBS, {"cutoff": cutoff, "limit": limit})).scalars())
    if not jobs:
        return 0
    left = limit
    for part in _JOB_PARTS:
        if left == 0:
            return limit
        deleted = await session.execute(part, {"jobs": jobs, "limit": left})
        left -= int(deleted.rowcount)  # type: ignore[attr-defined]
    emptied = await session.execute(_EMPTY_JOBS, {"jobs": jobs})
    return limit - left + int(emptied.rowcount)  # type: ignore[attr-defined]
