"""Every query of the polling engine: claim due tasks, read a leased batch, write results back,
release what was not polled, expire what passed its deadline.

Time is always a parameter (`now`), never `now()` hidden in SQL. A claim sets a lease
(`lease_token`, `lease_until`); every later write is guarded by `lease_token = :token AND
state = 'pending'`, so a late or duplicated message, a lease taken over by someone else, or a
cancel in between makes the write change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import RowMapping, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.polling import PollDecision
from service.store.outbox import record_events
from service.store.tables import Task

_CLAIM_DUE = text(
    """
    UPDATE tasks SET lease_token = :token, lease_until = :lease_until
    WHERE id IN (
        SELECT id FROM tasks
        WHERE state = 'pending' AND next_poll_at <= :now AND expires_at > :now
          AND (lease_until IS NULL OR lease_until < :now)
        ORDER BY next_poll_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)

_LOAD_LEASED = text(
    """
    SELECT id, task_id, poll_count, expires_at, lease_until FROM tasks
    WHERE id = ANY(CAST(:ids AS bigint[])) AND lease_token = :token AND state = 'pending'
      AND lease_until > :now
    ORDER BY id
    """
)

_LOCK_LEASED = text(
    """
    SELECT id FROM tasks
    WHERE id = ANY(CAST(:ids AS bigint[])) AND lease_token = :token AND state = 'pending'
    ORDER BY id
    FOR UPDATE
    """
)

_WRITE_BACK = text(
    """
    UPDATE tasks AS t SET
        state = v.state,
        poll_count = v.poll_count,
        next_poll_at = v.next_poll_at,
        completed_at = v.completed_at,
        result = COALESCE(v.result, t.result),
        last_error = COALESCE(v.last_error, t.last_error),
        upstream_request_id = COALESCE(v.request_id, t.upstream_request_id),
        lease_token = NULL,
        lease_until = NULL,
        updated_at = :now
    FROM unnest(
        CAST(:ids AS bigint[]), CAST(:states AS text[]), CAST(:poll_counts AS integer[]),
        CAST(:next_poll_ats AS timestamptz[]), CAST(:completed_ats AS timestamptz[]),
        CAST(:results AS jsonb[]), CAST(:errors AS jsonb[]), CAST(:request_ids AS text[])
    ) AS v(id, state, poll_count, next_poll_at, completed_at, result, last_error, request_id)
    WHERE t.id = v.id AND t.lease_token = :token AND t.state = 'pending'
    RETURNING t.*
    """
)

_RELEASE = text(
    """
    UPDATE tasks SET
        lease_token = NULL,
        lease_until = NULL,
        next_poll_at = LEAST(GREATEST(next_poll_at, :not_before), expires_at),
        updated_at = :now
    WHERE id = ANY(CAST(:ids AS bigint[])) AND lease_token = :token AND state = 'pending'
    """
)

_EXPIRE_OVERDUE = text(
    """
    UPDATE tasks SET
        state = 'expired',
        completed_at = :now,
        next_poll_at = NULL,
        lease_token = NULL,
        lease_until = NULL,
        updated_at = :now
    WHERE id IN (
        SELECT id FROM tasks
        WHERE state = 'pending' AND expires_at <= :now
          AND (lease_until IS NULL OR lease_until < :now)
        ORDER BY expires_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING *
    """
)


@dataclass(frozen=True)
class LeasedTask:
    """A task this worker holds the lease of, as the poll needs it."""

    id: int
    task_id: str
    poll_count: int
    expires_at: datetime
    lease_until: datetime


@dataclass(frozen=True)
class PollWrite:
    """The decision to write for one leased task."""

    id: int
    decision: PollDecision


async def claim_due_tasks(
    session: AsyncSession, now: datetime, lease_s: float, limit: int
) -> tuple[uuid.UUID, list[int]]:
    """Lease up to `limit` due pending tasks, oldest due first; returns the lease token and ids.

    Rows another claimer holds locked are skipped, and a live lease excludes a row, so concurrent
    schedulers never claim the same task for the same round.
    """
    token = uuid.uuid4()
    if limit <= 0:
        return token, []
    result = await session.execute(
        _CLAIM_DUE,
        {
            "token": token,
            "lease_until": now + timedelta(seconds=lease_s),
            "now": now,
            "limit": limit,
        },
    )
    return token, sorted(int(row[0]) for row in result)


async def load_leased_tasks(
    session: AsyncSession, ids: Sequence[int], token: uuid.UUID, now: datetime
) -> list[LeasedTask]:
    """The tasks among `ids` still leased under `token`, still pending, lease not over."""
    result = await session.execute(_LOAD_LEASED, {"ids": list(ids), "token": token, "now": now})
    return [
        LeasedTask(
            id=int(row.id),
            task_id=str(row.task_id),
            poll_count=int(row.poll_count),
            expires_at=row.expires_at,
            lease_until=row.lease_until,
        )
        for row in result
    ]


async def record_poll_results(
    session: AsyncSession, token: uuid.UUID, writes: Sequence[PollWrite], now: datetime
) -> list[Task]:
    """Write each decision, guarded by the lease, and the events of final states (same
    transaction). Returns the tasks as written; rows whose lease was lost are left untouched."""
    if not writes:
        return []
    ordered = sorted(writes, key=lambda write: write.id)
    ids = [write.id for write in ordered]
    # Locking in id order first keeps two writers from deadlocking on overlapping rows.
    await session.execute(_LOCK_LEASED, {"ids": ids, "token": token})
    decisions = [write.decision for write in ordered]
    result = await session.execute(
        _WRITE_BACK,
        {
            "ids": ids,
            "states": [d.state for d in decisions],
            "poll_counts": [d.poll_count for d in decisions],
            "next_poll_ats": [d.next_poll_at for d in decisions],
            "completed_ats": [d.completed_at for d in decisions],
            "results": [_json(d.result.as_json() if d.result else None) for d in decisions],
            "errors": [_json(d.last_error) for d in decisions],
            "request_ids": [d.upstream_request_id for d in decisions],
            "token": token,
            "now": now,
        },
    )
    written = [task_from_row(row._mapping) for row in result]
    await record_events(session, written, now)
    return written


async def release_leases(
    session: AsyncSession,
    ids: Sequence[int],
    token: uuid.UUID,
    now: datetime,
    *,
    not_before: datetime | None = None,
) -> int:
    """Give back tasks that were not polled: no call counted, due again at `not_before` at the
    earliest (never past the deadline). Returns how many leases were still ours."""
    if not ids:
        return 0
    result = await session.execute(
        _RELEASE,
        {
            "ids": sorted(ids),
            "token": token,
            "now": now,
            "not_before": not_before or now,
        },
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def expire_overdue_tasks(session: AsyncSession, now: datetime, limit: int) -> list[Task]:
    """Expire up to `limit` pending tasks past their deadline that nobody holds a live lease on,
    and write their events. Returns the expired tasks."""
    result = await session.execute(_EXPIRE_OVERDUE, {"now": now, "limit": limit})
    expired = [task_from_row(row._mapping) for row in result]
    await record_events(session, expired, now)
    return expired


def task_from_row(row: RowMapping) -> Task:
    """A detached Task built from a `RETURNING tasks.*` row (for its JSON; never added to a
    session)."""
    return Task(**{key: row[name] for key, name in _TASK_COLUMNS})


# (attribute, column name) of every column of tasks: the ORM spells "metadata" as `metadata_`.
_TASK_COLUMNS = [(attr.key, attr.columns[0].name) for attr in sa_inspect(Task).column_attrs]


def _json(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
