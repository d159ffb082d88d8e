"""The deadline sweep: pending tasks past their deadline that nobody holds a live lease on end
(expired, or completed with the answer they wait to re-check), with their events.

Time is always a parameter (`now`), never `now()` hidden in SQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.rechecks import RECHECK_NOT_SUBMITTED
from service.domain.states import TaskState
from service.store.outbox import FinishedTask, record_events
from service.store.rechecks import end_scheduled_submits

# `state = 'pending'` is written out, not a parameter, here and in the claim
# (service/store/poll_claims.py): only then can the planner use the partial index
# ix_tasks_pending_expires_at.
#
# A task that has its answer and waits for a re-check that could not be submitted before its
# deadline (service/domain/rechecks.py) ends with that answer, completed, and says why.
_EXPIRE_OVERDUE = text(
    f"""
    UPDATE tasks SET
        state = CASE WHEN result IS NULL THEN '{TaskState.EXPIRED}'
                     ELSE '{TaskState.COMPLETED}' END,
        last_error = CASE WHEN result IS NULL THEN last_error
                          ELSE jsonb_build_object(
                              'code', '{RECHECK_NOT_SUBMITTED}',
                              'message', 'the re-check could not be submitted before the '
                                         || 'deadline; the answer before it is the last',
                              'at', CAST(:now AS timestamptz)) END,
        completed_at = :now,
        next_poll_at = NULL,
        lease_token = NULL,
        lease_until = NULL,
        updated_at = :now
    WHERE id IN (
        SELECT id FROM tasks
        WHERE state = '{TaskState.PENDING}' AND expires_at <= :now
          AND (lease_until IS NULL OR lease_until < :now)
        ORDER BY expires_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, client_id, task_id, state, row_to_json(tasks)::text AS row_json,
              recheck IS NOT NULL AS has_recheck
    """  # noqa: S608 - only enum values are interpolated
)


async def expire_overdue_tasks(
    session: AsyncSession, now: datetime, limit: int
) -> list[FinishedTask]:
    """Expire up to `limit` pending tasks past their deadline that nobody holds a live lease on
    (one waiting for a re-check completes with its answer instead), write their events and erase
    their kept numbers. Returns the tasks that ended."""
    rows = (await session.execute(_EXPIRE_OVERDUE, {"now": now, "limit": limit})).all()
    expired = [FinishedTask.from_returned_row(row) for row in rows]
    await record_events(session, expired, now)
    await end_scheduled_submits(session, [int(row.id) for row in rows if row.has_recheck], now)
    return expired
