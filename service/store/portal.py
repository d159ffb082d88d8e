"""The portal's own reads: what no REST route shows. Everything the REST API also shows (a task,
the task list, an event's deliveries and attempts, subscriptions) the portal reads through that
route's store function instead, so nothing is computed twice.

Written as `text()` statements: each is an aggregate or a join whose exact shape (the index it
walks, the cap on the rows it reads) is the point. Every statement is scoped by `client_id` and
bounded: counts stop at COUNT_CAP, charts read at most CHART_ROW_CAP rows, lists take a LIMIT on
an index in its order (EXPLAINs at 1,000,000 tasks are in the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.states import DeliveryState, EventType, TaskState

# A count above this shows as "10,000+": counting a big client's million tasks on every page
# view would read a million index entries; this reads at most 10,001 per state.
COUNT_CAP = 10_000
# The charts read at most this many of the newest rows of the window.
CHART_ROW_CAP = 50_000

# One capped count per state, each an index-only walk of ix_tasks_client_id_state_id.
_COUNT_BY_STATE = text(
    " UNION ALL ".join(
        f"""(SELECT '{state}' AS state, count(*) AS n FROM (
                SELECT 1 FROM tasks WHERE client_id = :client_id AND state = '{state}'
                LIMIT {COUNT_CAP + 1}) AS capped_{state})"""  # noqa: S608 - enum values only
        for state in TaskState
    )
)

_TASK_STORY = text(
    """
    SELECT t.id AS task_pk, t.poll_history, e.id AS event_pk, e.public_id AS event_id,
           e.type AS event_type, e.created_at AS event_created_at
    FROM tasks t LEFT JOIN events e ON e.task_pk = t.id
    WHERE t.client_id = :client_id AND t.task_id = :task_id
    ORDER BY e.id
    LIMIT 1
    """
)

_FAILED_DELIVERIES = text(
    f"""
    SELECT d.id AS pk, d.public_id AS id, e.public_id AS event_id, e.type AS event_type,
           t.task_id, s.public_id AS subscription_id, s.url AS subscription_url,
           s.enabled AND s.deleted_at IS NULL AS subscription_active,
           d.attempt_count, d.last_response_status, d.last_error, d.finished_at
    FROM deliveries d
    JOIN events e ON e.id = d.event_id
    LEFT JOIN tasks t ON t.id = e.task_pk
    JOIN subscriptions s ON s.id = d.subscription_id
    WHERE d.client_id = :client_id AND d.state = '{DeliveryState.FAILED}'
      AND (CAST(:before AS timestamptz) IS NULL OR d.finished_at < :before)
    ORDER BY d.finished_at DESC
    LIMIT :limit
    """  # noqa: S608 - only enum values are interpolated
)

# Detection lag: how long a completed task's answer may have waited upstream before a poll found
# it, i.e. the time from the poll before the completing one (or registration) to completion.
_FINISHED_BY_HOUR = text(
    f"""
    WITH recent AS (
        SELECT state, completed_at, registered_at, poll_history FROM tasks
        WHERE client_id = :client_id AND state <> '{TaskState.PENDING}'
          AND completed_at >= :since
        ORDER BY completed_at DESC
        LIMIT {CHART_ROW_CAP}
    ),
    lagged AS (
        SELECT date_trunc('hour', completed_at) AS hour, state,
               CASE WHEN state = '{TaskState.COMPLETED}' THEN extract(epoch FROM completed_at -
                   CASE WHEN jsonb_array_length(poll_history) >= 2
                        THEN (poll_history -> -2 ->> 'at')::timestamptz
                        ELSE registered_at END) END AS lag_s
        FROM recent
    )
    SELECT hour, state, count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_s) AS lag_p50_s,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY lag_s) AS lag_p95_s
    FROM lagged GROUP BY hour, state ORDER BY hour
    """  # noqa: S608 - only enum values are interpolated
)

# Completed tasks per hour and phone_status (the overview counts them by verdict, which the
# domain derives: service/domain/verdicts.py). The same index and cap as the finished tasks.
_ANSWERS_BY_HOUR = text(
    f"""
    SELECT date_trunc('hour', completed_at) AS hour, phone_status, count(*) AS n FROM (
        SELECT completed_at, result ->> 'phone_status' AS phone_status FROM tasks
        WHERE client_id = :client_id AND state = '{TaskState.COMPLETED}'
          AND completed_at >= :since
        ORDER BY completed_at DESC
        LIMIT {CHART_ROW_CAP}
    ) AS recent
    GROUP BY 1, 2 ORDER BY 1
    """  # noqa: S608 - only enum values are interpolated
)

_DELIVERIES_BY_HOUR = text(
    f"""
    SELECT date_trunc('hour', finished_at) AS hour, state, count(*) AS n FROM (
        SELECT state, finished_at FROM deliveries
        WHERE client_id = :client_id
          AND state IN ('{DeliveryState.SUCCEEDED}', '{DeliveryState.FAILED}')
          AND finished_at >= :since
        ORDER BY finished_at DESC
        LIMIT {CHART_ROW_CAP}
    ) AS recent
    GROUP BY 1, 2 ORDER BY 1
    """  # noqa: S608 - only enum values are interpolated
)


@dataclass(frozen=True, slots=True)
class TaskStory:
    """What the timeline adds to the task itself: its last polls and its event, if any."""

    task_pk: int
    poll_history: list[dict[str, Any]]
    event_pk: int | None
    event_id: str | None
    event_type: EventType | None
    event_created_at: datetime | None


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    pk: int
    id: str
    event_id: str
    event_type: EventType
    # None for an event about a subscription (`subscription.disabled`).
    task_id: str | None
    subscription_id: str
    subscription_url: str
    subscription_active: bool
    attempt_count: int
    last_response_status: int | None
    last_error: str | None
    finished_at: datetime


@dataclass(frozen=True, slots=True)
class FinishedHour:
    hour: datetime
    state: TaskState
    n: int
    lag_p50_s: float | None
    lag_p95_s: float | None


@dataclass(frozen=True, slots=True)
class AnswerHour:
    hour: datetime
    phone_status: str
    n: int


@dataclass(frozen=True, slots=True)
class DeliveryHour:
    hour: datetime
    state: DeliveryState
    n: int


async def count_tasks_by_state(session: AsyncSession, client_id: int) -> dict[TaskState, int]:
    """This client's tasks per state, each count capped at COUNT_CAP + 1."""
    result = await session.execute(_COUNT_BY_STATE, {"client_id": client_id})
    return {TaskState(row.state): int(row.n) for row in result}


async def find_task_story(session: AsyncSession, client_id: int, task_id: str) -> TaskStory | None:
    row = (
        await session.execute(_TASK_STORY, {"client_id": client_id, "task_id": task_id})
    ).one_or_none()
    if row is None:
        return None
    return TaskStory(
        task_pk=row.task_pk,
        poll_history=row.poll_history,
        event_pk=row.event_pk,
        event_id=row.event_id,
        event_type=None if row.event_type is None else EventType(row.event_type),
        event_created_at=row.event_created_at,
    )


async def list_failed_deliveries(
    session: AsyncSession, client_id: int, *, before: datetime | None, limit: int
) -> list[FailedDelivery]:
    """This client's deliveries that ended failed, newest first, finished before `before`."""
    result = await session.execute(
        _FAILED_DELIVERIES, {"client_id": client_id, "before": before, "limit": limit}
    )
    return [
        FailedDelivery(
            pk=row.pk,
            id=row.id,
            event_id=row.event_id,
            event_type=EventType(row.event_type),
            task_id=row.task_id,
            subscription_id=row.subscription_id,
            subscription_url=row.subscription_url,
            subscription_active=row.subscription_active,
            attempt_count=row.attempt_count,
            last_response_status=row.last_response_status,
            last_error=row.last_error,
            finished_at=row.finished_at,
        )
        for row in result
    ]


async def finished_tasks_by_hour(
    session: AsyncSession, client_id: int, since: datetime
) -> list[FinishedHour]:
    """Tasks that reached a final state since `since`, per hour and state, with the detection
    lag percentiles of the completed ones."""
    result = await session.execute(_FINISHED_BY_HOUR, {"client_id": client_id, "since": since})
    return [
        FinishedHour(
            hour=row.hour,
            state=TaskState(row.state),
            n=row.n,
            lag_p50_s=row.lag_p50_s,
            lag_p95_s=row.lag_p95_s,
        )
        for row in result
    ]


async def answers_by_hour(
    session: AsyncSession, client_id: int, since: datetime
) -> list[AnswerHour]:
    """Tasks completed since `since`, per hour and the phone_status of their result."""
    result = await session.execute(_ANSWERS_BY_HOUR, {"client_id": client_id, "since": since})
    return [AnswerHour(hour=row.hour, phone_status=row.phone_status, n=row.n) for row in result]


async def delivery_outcomes_by_hour(
    session: AsyncSession, client_id: int, since: datetime
) -> list[DeliveryHour]:
    """Deliveries that ended (succeeded or failed) since `since`, per hour and outcome."""
    result = await session.execute(_DELIVERIES_BY_HOUR, {"client_id": client_id, "since": since})
    return [DeliveryHour(hour=row.hour, state=DeliveryState(row.state), n=row.n) for row in result]
