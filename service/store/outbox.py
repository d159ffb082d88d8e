"""The transactional outbox: a task's final state, its event and its deliveries, written together.

`record_events` runs inside the transaction that moves tasks to a final state (the worker's
write-back and the deadline sweep both call it), so an event exists exactly when its state does.
The unique constraint on events (task_pk, type) makes a second event for the same final state
impossible; ON CONFLICT DO NOTHING turns a duplicate into a no-op instead of an error. Each new
event gets one delivery per enabled, not deleted subscription of its client that wants its type,
due at once. The worker's write-back may lease the new deliveries to itself in the same statement
(`lease`) and send them at once: no claim, no broker message and no scheduler tick between a
result and its webhook; a worker that dies first leaves them to come due when the lease ends.

The event's data is the task's JSON (service/domain/schemas.py, TaskOut: its one definition). At a
thousand completions a second it is built straight from the row as Postgres renders it
(`row_to_json`) by TaskOut's compiled validator and serializer: no ORM object and no Python dict
per task, and the statement's input is one JSON document rather than arrays that the driver would
escape element by element.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.jsontext import compact_json
from service.domain.public_ids import DELIVERY_PREFIX, EVENT_PREFIX, new_public_id, public_id_sql
from service.domain.schemas import TaskError, TaskOut, TaskResult
from service.domain.states import (
    EVENT_TYPE_OF_STATE,
    DeliveryState,
    EventType,
    TaskSource,
    TaskState,
)
from service.store.tables.tasks import Task

# One statement: the events (skipping any that exist), then the deliveries of the new ones only.
# Delivery ids are made in SQL because their number is only known there.
_RECORD_EVENTS = text(
    f"""
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(CAST(:events AS jsonb))
            AS i(public_id text, client_id bigint, task_pk bigint, type text, data jsonb,
                 traceparent text)
    ),
    new_events AS (
        INSERT INTO events (public_id, client_id, task_pk, type, data, created_at, traceparent)
        SELECT public_id, client_id, task_pk, type, data, :now, traceparent
        FROM input ORDER BY task_pk
        ON CONFLICT (task_pk, type) DO NOTHING
        RETURNING id, client_id, task_pk, type
    ),
    new_deliveries AS (
        INSERT INTO deliveries
            (public_id, event_id, subscription_id, client_id, state, next_attempt_at, created_at,
             lease_token, lease_until)
        SELECT {public_id_sql(DELIVERY_PREFIX)}, e.id, s.id, e.client_id,
               '{DeliveryState.PENDING}', :now, :now,
               CAST(:lease_token AS uuid), CAST(:lease_until AS timestamptz)
        FROM new_events e
        JOIN tasks t ON t.id = e.task_pk
        JOIN subscriptions s
          ON s.client_id = e.client_id
         AND s.enabled
         AND s.deleted_at IS NULL
         AND e.type = ANY(s.event_types)
         -- `include_job_items` false: a check job item's task events are not sent to it.
         AND (s.include_job_items OR t.job_pk IS NULL)
        ORDER BY e.id, s.id
        RETURNING id
    )
    SELECT id, TRUE AS is_event FROM new_events
    UNION ALL SELECT id, FALSE FROM new_deliveries
    ORDER BY is_event DESC, id
    """  # noqa: S608 - only constants are interpolated
)


# A subscription that phonebridge disabled: its event, and a delivery to each of the client's
# other live subscriptions that name the type (due at once; the scheduler claims them).
_RECORD_SUBSCRIPTION_DISABLED = text(
    f"""
    WITH new_event AS (
        INSERT INTO events (public_id, client_id, subscription_pk, type, data, created_at)
        SELECT :public_id, client_id, id, '{EventType.SUBSCRIPTION_DISABLED}',
               CAST(:data AS jsonb), :now
        FROM subscriptions WHERE id = :subscription_pk
        RETURNING id, client_id
    ),
    new_deliveries AS (
        INSERT INTO deliveries
            (public_id, event_id, subscription_id, client_id, state, next_attempt_at, created_at)
        SELECT {public_id_sql(DELIVERY_PREFIX)}, e.id, s.id, e.client_id,
               '{DeliveryState.PENDING}', :now, :now
        FROM new_event e
        JOIN subscriptions s
          ON s.client_id = e.client_id
         AND s.id <> :subscription_pk
         AND s.enabled
         AND s.deleted_at IS NULL
         AND '{EventType.SUBSCRIPTION_DISABLED}' = ANY(s.event_types)
        ORDER BY s.id
        RETURNING id
    )
    SELECT (SELECT id FROM new_event) AS event_pk, (SELECT count(*) FROM new_deliveries) AS sent
    """  # noqa: S608 - only constants are interpolated
)


def task_json(task: Task) -> dict[str, Any]:
    """The task as the contract shows it, ready for a JSON column or body."""
    return TaskOut(
        task_id=task.task_id,
        state=TaskState(task.state),  # the CHECK constraint guarantees a TaskState
        result=TaskResult.model_validate(task.result) if task.result else None,
        submitted_at=task.submitted_at,
        registered_at=task.registered_at,
        expires_at=task.expires_at,
        completed_at=task.completed_at,
        next_poll_at=task.next_poll_at,
        poll_count=task.poll_count,
        last_error=TaskError.model_validate(task.last_error) if task.last_error else None,
        upstream_request_id=task.upstream_request_id,
        metadata=task.metadata_,
        source=TaskSource(task.source),
        phone_number_masked=task.phone_number_masked,
        job_id=task.job_id,
    ).model_dump(mode="json")


@dataclass(frozen=True)
class FinishedTask:
    """A task as it is right after reaching a final state, with its contract JSON (`data`, the
    event's data)."""

    id: int
    client_id: int
    task_id: str
    state: TaskState
    data: str
    # The span of the poll that ended it (traces on), for its event's webhook attempts.
    traceparent: str | None = None

    @classmethod
    def from_row_json(
        cls,
        id: int,
        client_id: int,
        task_id: str,
        state: TaskState,
        row_json: str,
        traceparent: str | None = None,
    ) -> FinishedTask:
        """From the tasks row as JSON (`row_to_json(tasks)`): its column names are TaskOut's
        field names, and the columns TaskOut does not show are ignored."""
        data = TaskOut.model_validate_json(row_json).model_dump_json()
        return cls(id, client_id, task_id, state, data, traceparent)

    @classmethod
    def from_returned_row(cls, row: Row[Any], traceparent: str | None = None) -> FinishedTask:
        """From a statement's returned row: id, client_id, task_id, state and row_json (the
        `row_to_json` of the tasks row), as the poll write-back and the deadline sweep return."""
        return cls.from_row_json(
            int(row.id),
            int(row.client_id),
            str(row.task_id),
            TaskState(row.state),
            str(row.row_json),
            traceparent,
        )

    @classmethod
    def of(cls, task: Task) -> FinishedTask:
        """From an ORM task (already flushed, so it has its id)."""
        data = compact_json(task_json(task))  # metadata may hold integers beyond 64 bits
        return cls(task.id, task.client_id, task.task_id, TaskState(task.state), data)


@dataclass(frozen=True)
class DeliveryLease:
    """New deliveries leased, as they are inserted, to the worker that will send them."""

    token: uuid.UUID
    until: datetime


@dataclass(frozen=True)
class RecordedEvents:
    event_ids: list[int]
    delivery_ids: list[int]


async def record_events(
    session: AsyncSession, finished: Sequence[FinishedTask], now: datetime
) -> list[int]:
    """Insert the event of each task's final state and its deliveries; returns new event ids.

    Tasks in a non-final state are ignored; an event that already exists is left as it is.
    """
    return (await record_events_and_deliveries(session, finished, now)).event_ids


async def record_events_and_deliveries(
    session: AsyncSession,
    finished: Sequence[FinishedTask],
    now: datetime,
    lease: DeliveryLease | None = None,
) -> RecordedEvents:
    """`record_events`, answering the new deliveries' ids too, leased under `lease` when given
    (due at once either way)."""
    events = [_event_input(task) for task in finished if task.state in EVENT_TYPE_OF_STATE]
    if not events:
        return RecordedEvents([], [])
    result = await session.execute(
        _RECORD_EVENTS,
        {
            "events": compact_json(events),
            "now": now,
            "lease_token": None if lease is None else lease.token,
            "lease_until": None if lease is None else lease.until,
        },
    )
    recorded = RecordedEvents([], [])
    for row in result:
        (recorded.event_ids if row.is_event else recorded.delivery_ids).append(int(row.id))
    return recorded


def _event_input(task: FinishedTask) -> dict[str, Any]:
    event = {
        "public_id": new_public_id(EVENT_PREFIX),
        "client_id": task.client_id,
        "task_pk": task.id,
        "type": EVENT_TYPE_OF_STATE[task.state],
        "data": orjson.Fragment(task.data),
    }
    # Left out while traces are off: the column is then NULL, and the document no longer.
    if task.traceparent is not None:
        event["traceparent"] = task.traceparent
    return event


# A check job that ended: its one `job.completed` event (events.job_pk is unique per type) and a
# delivery to each live subscription of its client that names the type.
_RECORD_JOB_COMPLETED = text(
    f"""
    WITH new_event AS (
        INSERT INTO events (public_id, client_id, job_pk, type, data, created_at)
        VALUES (:public_id, :client_id, :job_pk, '{EventType.JOB_COMPLETED}',
                CAST(:data AS jsonb), :now)
        ON CONFLICT (job_pk, type) DO NOTHING
        RETURNING id, client_id
    ),
    new_deliveries AS (
        INSERT INTO deliveries
            (public_id, event_id, subscription_id, client_id, state, next_attempt_at, created_at)
        SELECT {public_id_sql(DELIVERY_PREFIX)}, e.id, s.id, e.client_id,
               '{DeliveryState.PENDING}', :now, :now
        FROM new_event e
        JOIN subscriptions s
          ON s.client_id = e.client_id
         AND s.enabled
         AND s.deleted_at IS NULL
         AND '{EventType.JOB_COMPLETED}' = ANY(s.event_types)
        ORDER BY s.id
        RETURNING id
    )
    SELECT (SELECT id FROM new_event) AS event_pk, (SELECT count(*) FROM new_deliveries) AS sent
    """  # noqa: S608 - only constants are interpolated
)


async def record_job_completed(
    session: AsyncSession, *, client_id: int, job_pk: int, data: str, now: datetime
) -> bool:
    """The `job.completed` event of a job that ended (`data`: the job's JSON with its final
    counts) and its deliveries; False when the job already has it."""
    row = (
        await session.execute(
            _RECORD_JOB_COMPLETED,
            {
                "public_id": new_public_id(EVENT_PREFIX),
                "client_id": client_id,
                "job_pk": job_pk,
                "data": data,
                "now": now,
            },
        )
    ).one()
    return row.event_pk is not None


@dataclass(frozen=True)
class SubscriptionDisabledEvent:
    event_id: str
    deliveries: int


async def record_subscription_disabled(
    session: AsyncSession, subscription_pk: int, data: str, now: datetime
) -> SubscriptionDisabledEvent:
    """The `subscription.disabled` event of a subscription phonebridge just disabled (its
    `data`: the subscription's contract JSON), with its deliveries to the client's other
    subscriptions that take it. Written in the disable's own transaction: one disable, one
    event."""
    public_id = new_public_id(EVENT_PREFIX)
    row = (
        await session.execute(
            _RECORD_SUBSCRIPTION_DISABLED,
            {
                "public_id": public_id,
                "subscription_pk": subscription_pk,
                "data": data,
                "now": now,
            },
        )
    ).one()
    return SubscriptionDisabledEvent(public_id, int(row.sent))
