"""Tasks as clients see them: registration (one or a batch), lookup, listing and cancel.

This is the API's hot path, so it speaks a driver directly on autocommit connections from the
API's own pools (see service/api/resources.py): measured on this machine, SQLAlchemy's checkout
(with its pre-ping) and statement execution cost about three times the CPU of the bare driver for
the same INSERT. The single-task registration, the most frequent call, runs on asyncpg (its
INSERT took about 70 us of the API's CPU where psycopg and its pool took about 125, issue 28);
the rest on psycopg. Each function is one statement (or, on a conflict, one more), so no
explicit transaction is needed. Every statement is scoped by `client_id`, so one client never
reaches another's task.

The engine's claim is in service/store/poll_claims.py, its reads and releases of leased tasks in
service/store/leased_tasks.py, its write-back in service/store/poll_results.py and its deadline
sweep in service/store/deadline_sweep.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

import orjson
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, RowMaker

from service.domain.intake import Registration
from service.domain.states import TaskSource, TaskState
from service.domain.verdicts import Verdict, verdict_of
from service.store.db import IntakeConnection
from service.store.rechecks import END_SUBMITS_SET, END_SUBMITS_WHERE

TaskConnection = AsyncConnection[DictRow]
CancelOutcome = Literal["cancelled", "already_final", "not_found"]


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A task in the names of service.domain.schemas.TaskOut, plus the row `id` for cursors.

    Not TaskOut itself: validating one costs about 40 us per task on the hot path (see task_body
    in service/api/tasks.py, and the test that holds the two equal)."""

    id: int
    task_id: str
    state: TaskState
    result: dict[str, Any] | None
    submitted_at: datetime
    registered_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    next_poll_at: datetime | None
    poll_count: int
    last_error: dict[str, Any] | None
    upstream_request_id: str | None
    metadata: dict[str, Any]
    source: TaskSource
    phone_number_masked: str | None
    rechecks: list[dict[str, Any]]
    job_id: str | None = None

    @property
    def verdict(self) -> Verdict | None:
        """The result's verdict (None without a result, or for a phone_status of no verdict)."""
        phone_status = None if self.result is None else self.result.get("phone_status")
        return verdict_of(phone_status) if isinstance(phone_status, str) else None


# Selected in TaskRow's field order, so that a row is built from its values by position.
TASK_COLUMNS = ", ".join(field.name for field in fields(TaskRow))


def _task_row(values: Iterable[Any]) -> TaskRow:
    id_, task_id, state, *rest, source, masked, rechecks, job_id = values
    return TaskRow(  # type: ignore[call-arg]
        id_, task_id, TaskState(state), *rest, TaskSource(source), masked, rechecks, job_id
    )


def _task_rows(cursor: AsyncCursor[Any]) -> RowMaker[TaskRow]:
    """psycopg's row factory for statements that return TASK_COLUMNS.

    Measured on this machine: building a TaskRow takes about 3 us where dict_row's dict took 1 us,
    and a whole find_task used the same CPU either way (about 140 us, within the noise): nothing
    next to a single registration's ~430 us, so the hot path gets a frozen dataclass too. Built
    by position, not by psycopg's class_row, which makes a dict of keyword arguments per row."""
    return _task_row


def numbered(statement: str) -> str:
    """A statement of `%s` placeholders in asyncpg's form, `$1`, `$2`, ...: the same text
    serves both drivers."""
    head, *rest = statement.split("%s")
    return head + "".join(f"${n}{part}" for n, part in enumerate(rest, 1))


# Due at once (next_poll_at = now): the scheduler polls a new task within about a second.
# Positional parameters (in register_task's order).
_INSERT_ONE = f"""
    INSERT INTO tasks (client_id, task_id, state, metadata, submitted_at, expires_at,
                       registered_at, next_poll_at, updated_at, poll_count)
    VALUES (%s, %s, '{TaskState.PENDING}', %s::jsonb, %s, %s, %s, %s, %s, 0)
    ON CONFLICT (client_id, task_id) DO NOTHING
    RETURNING {TASK_COLUMNS}
"""  # noqa: S608 - only constants are interpolated

# With traces on (service/observability/traces.py), the request's traceparent goes on the row; a
# statement of its own, so that with traces off the hot path binds nothing more.
_INSERT_ONE_TRACED = f"""
    INSERT INTO tasks (client_id, task_id, state, metadata, submitted_at, expires_at,
                       registered_at, next_poll_at, updated_at, poll_count, traceparent)
    VALUES (%s, %s, '{TaskState.PENDING}', %s::jsonb, %s, %s, %s, %s, %s, 0, %s)
    ON CONFLICT (client_id, task_id) DO NOTHING
    RETURNING {TASK_COLUMNS}
"""  # noqa: S608 - only constants are interpolated

# One statement for a whole batch. The entries travel as a single JSON array rendered by orjson:
# binding four arrays instead cost about 20 us of CPU per task in psycopg's element-by-element
# quoting, five times as much. The entries arrive sorted by task_id, so two batches that overlap
# take their row locks in the same order and cannot deadlock.
_INSERT_BATCH = f"""
    INSERT INTO tasks (client_id, task_id, state, metadata, submitted_at, registered_at,
                       expires_at, next_poll_at, poll_count, updated_at, traceparent)
    SELECT %(client_id)s, entry.task_id, '{TaskState.PENDING}', entry.metadata::jsonb,
           entry.submitted_at, %(now)s, entry.expires_at, %(now)s, 0, %(now)s, %(traceparent)s
    FROM json_to_recordset(%(entries)s::json)
         AS entry(task_id text, metadata text, submitted_at timestamptz, expires_at timestamptz)
    ON CONFLICT (client_id, task_id) DO NOTHING
    RETURNING task_id
"""  # noqa: S608 - only an enum value is interpolated

_FIND = f"""
    SELECT {TASK_COLUMNS} FROM tasks WHERE client_id = %s AND task_id = %s
"""  # noqa: S608 - only constants are interpolated

_INSERT_ONE_NUMBERED = numbered(_INSERT_ONE)
_INSERT_ONE_TRACED_NUMBERED = numbered(_INSERT_ONE_TRACED)
_FIND_NUMBERED = numbered(_FIND)

# Only `pending` rows change, and the engine's write-back also requires `pending`, so a cancel
# wins over any upstream answer that arrives after it; clearing the lease voids a claim in flight.
# A re-check still to come is stopped in the same statement, its kept number erased (the task
# locked first, as everywhere: service/store/rechecks.py).
_CANCEL = f"""
    WITH cancelled AS (
        UPDATE tasks
        SET state = '{TaskState.CANCELLED}', completed_at = %(now)s, next_poll_at = NULL,
            lease_token = NULL, lease_until = NULL, updated_at = %(now)s
        WHERE client_id = %(client_id)s AND task_id = %(task_id)s
          AND state = '{TaskState.PENDING}'
        RETURNING {TASK_COLUMNS}, recheck IS NOT NULL AS has_recheck
    ),
    ended AS (
        UPDATE scheduled_submits SET {END_SUBMITS_SET}, updated_at = %(now)s
        WHERE task_pk IN (SELECT id FROM cancelled WHERE has_recheck) AND {END_SUBMITS_WHERE}
    )
    SELECT {TASK_COLUMNS} FROM cancelled
"""  # noqa: S608 - only constants are interpolated


async def register_task(
    conn: IntakeConnection,
    client_id: int,
    registration: Registration,
    now: datetime,
    traceparent: str | None = None,
) -> tuple[TaskRow, bool]:
    """Register the task unless this client already has that task_id (with the `traceparent`
    of the request, while traces are on), on a connection of the asyncpg pool.

    Returns the stored task and True when this call created it. One statement when the task is
    new; a second, reading the existing row, only on a conflict.
    """
    # registered_at, next_poll_at and updated_at are all `now`.
    params: tuple[Any, ...] = (
        client_id,
        registration.task_id,
        registration.metadata_json,
        registration.submitted_at,
        registration.expires_at,
        now,
        now,
        now,
    )
    insert = _INSERT_ONE_NUMBERED
    if traceparent is not None:
        insert, params = _INSERT_ONE_TRACED_NUMBERED, (*params, traceparent)
    while True:
        created = await conn.fetchrow(insert, *params)
        if created is not None:
            return _task_row(created), True
        existing = await conn.fetchrow(_FIND_NUMBERED, client_id, registration.task_id)
        # The row that conflicted can only vanish through retention; then insert again.
        if existing is not None:
            return _task_row(existing), False


async def register_tasks(
    conn: TaskConnection,
    client_id: int,
    registrations: Sequence[Registration],
    now: datetime,
    traceparent: str | None = None,
) -> set[str]:
    """Register many distinct task_ids in one statement (each with the request's `traceparent`
    while traces are on); returns those that were new."""
    if not registrations:
        return set()
    ordered = sorted(registrations, key=lambda r: r.task_id)
    entries = [
        {
            "task_id": r.task_id,
            "metadata": r.metadata_json,
            "submitted_at": r.submitted_at,
            "expires_at": r.expires_at,
        }
        for r in ordered
    ]
    cursor = await conn.execute(
        _INSERT_BATCH,
        {
            "client_id": client_id,
            "now": now,
            "entries": orjson.dumps(entries).decode(),
            "traceparent": traceparent,
        },
    )
    return {row["task_id"] for row in await cursor.fetchall()}


async def find_task(conn: TaskConnection, client_id: int, task_id: str) -> TaskRow | None:
    cursor = conn.cursor(row_factory=_task_rows)
    return await (await cursor.execute(_FIND, (client_id, task_id))).fetchone()


async def list_tasks(
    conn: TaskConnection,
    client_id: int,
    *,
    state: TaskState | None,
    before_id: int | None,
    limit: int,
) -> list[TaskRow]:
    """This client's tasks, newest first, with row ids below `before_id` (keyset pagination).

    Ids only grow, so tasks registered while a client pages through land before its first page
    and never shift the later ones: no row is skipped or repeated.
    """
    # Each optional condition is written out so each shape gets its own plan (and index).
    conditions = ["client_id = %(client_id)s"]
    if state is not None:
        conditions.append("state = %(state)s")
    if before_id is not None:
        conditions.append("id < %(before_id)s")
    query = (
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE {' AND '.join(conditions)} "  # noqa: S608 - constants only
        "ORDER BY id DESC LIMIT %(limit)s"
    )
    cursor = conn.cursor(row_factory=_task_rows)
    await cursor.execute(
        query,
        {"client_id": client_id, "state": state, "before_id": before_id, "limit": limit},
    )
    return await cursor.fetchall()


async def cancel_task(
    conn: TaskConnection, client_id: int, task_id: str, now: datetime
) -> tuple[CancelOutcome, TaskRow | None]:
    """Cancel a pending task; say why not when it is already final or unknown."""
    params = {"client_id": client_id, "task_id": task_id, "now": now}
    cursor = conn.cursor(row_factory=_task_rows)
    cancelled = await (await cursor.execute(_CANCEL, params)).fetchone()
    if cancelled is not None:
        return "cancelled", cancelled
    current = await find_task(conn, client_id, task_id)
    if current is None:
        return "not_found", None
    return "already_final", current
