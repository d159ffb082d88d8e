"""The jobs the engine's moves look at (service/engine/job_moves.py): started jobs every item of
which has its final answer (to complete), cancelled ones still owed their `job.completed`, and
every client's jobs in a state (paused by upstream, to resume; queued, to pause)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.states import (
    EventType,
    JobItemState,
    JobState,
    PausedReason,
    ScheduledSubmitState,
    TaskState,
)
from service.store.check_jobs import JOB_COLUMNS, JobRow, job_row

# The engine's look at jobs that may move (ix_check_jobs_active_state): every item has its final
# answer (none waits to be submitted or is being submitted, and no task is pending).
_NOTHING_LEFT = f"""
    NOT EXISTS (SELECT 1 FROM check_job_items AS i
                WHERE i.job_pk = j.id AND i.state = '{JobItemState.WAITING}')
    AND NOT EXISTS (SELECT 1 FROM tasks AS t
                    WHERE t.job_pk = j.id AND t.state = '{TaskState.PENDING}')
"""  # noqa: S608 - only enum values are interpolated

_ALL_FINAL = text(
    f"""
    SELECT {JOB_COLUMNS} FROM check_jobs AS j
    WHERE j.state IN ('{JobState.QUEUED}', '{JobState.RUNNING}', '{JobState.PAUSED}')
      AND {_NOTHING_LEFT}
    ORDER BY j.id
    LIMIT :limit
    """  # noqa: S608 - only constants are interpolated
)

# Cancelled jobs still owed their job.completed: once what they had submitted is final.
_CANCELLED_UNREPORTED = text(
    f"""
    SELECT {JOB_COLUMNS} FROM check_jobs AS j
    WHERE j.state = '{JobState.CANCELLED}'
      AND NOT EXISTS (SELECT 1 FROM events AS e
                      WHERE e.job_pk = j.id AND e.type = '{EventType.JOB_COMPLETED}')
      AND NOT EXISTS (SELECT 1 FROM scheduled_submits AS s
                      WHERE s.job_pk = j.id AND s.state = '{ScheduledSubmitState.SUBMITTING}')
      AND NOT EXISTS (SELECT 1 FROM tasks AS t
                      WHERE t.job_pk = j.id AND t.state = '{TaskState.PENDING}')
    ORDER BY j.id
    LIMIT :limit
    """  # noqa: S608 - only constants are interpolated
)

_IN_STATE = text(
    f"""
    SELECT {JOB_COLUMNS} FROM check_jobs
    WHERE state = ANY(CAST(:states AS text[]))
      AND (CAST(:reason AS text) IS NULL OR paused_reason = CAST(:reason AS text))
    ORDER BY id
    LIMIT :limit
    """  # noqa: S608 - only constants are interpolated
)


async def jobs_all_final(session: AsyncSession, limit: int) -> list[JobRow]:
    """Started jobs (queued, running, paused) every item of which has its final answer."""
    return [job_row(row) for row in await session.execute(_ALL_FINAL, {"limit": limit})]


async def cancelled_jobs_unreported(session: AsyncSession, limit: int) -> list[JobRow]:
    """Cancelled jobs without their job.completed whose submitted items are all final."""
    return [job_row(row) for row in await session.execute(_CANCELLED_UNREPORTED, {"limit": limit})]


async def jobs_in_states(
    session: AsyncSession,
    states: Sequence[JobState],
    *,
    paused_reason: PausedReason | None = None,
    limit: int,
) -> list[JobRow]:
    """Every client's jobs in these states (and, given, paused for that reason)."""
    result = await session.execute(
        _IN_STATE,
        {"states": [state.value for state in states], "reason": paused_reason, "limit": limit},
    )
    return [job_row(row) for row in result]
