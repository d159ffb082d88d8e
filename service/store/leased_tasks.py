"""The tasks a worker holds the lease of: read as the poll needs them, or given back unpolled.

Every statement is guarded by `lease_token = :token AND state = 'pending'`, so a lease taken over
by someone else, or a cancel in between, makes it read or change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.rechecks import RecheckPolicy
from service.domain.states import TaskSource, TaskState

# A task being re-checked polls its current upstream task, whose age counts from its own
# submission (service/domain/rechecks.py).
_LOAD_LEASED = text(
    f"""
    SELECT t.id, t.task_id, t.poll_count, t.expires_at, t.lease_until, t.next_poll_at,
           COALESCE(t.upstream_submitted_at, t.submitted_at) AS submitted_at,
           t.last_pending_at, t.source, t.expects_callback,
           COALESCE(r.trusted, true) AS callbacks_trusted,
           t.upstream_task_id, t.recheck, jsonb_array_length(t.rechecks) AS rechecks_done,
           t.earlier_polls, t.traceparent, c.poll_target_p95_s
    FROM tasks t LEFT JOIN callback_records r ON r.client_id = t.client_id
    JOIN clients c ON c.id = t.client_id
    WHERE t.id = ANY(CAST(:ids AS bigint[])) AND t.lease_token = :token
      AND t.state = '{TaskState.PENDING}' AND t.lease_until > :now
    ORDER BY t.id
    """  # noqa: S608 - only enum values are interpolated
)

_RELEASE = text(
    f"""
    UPDATE tasks SET
        lease_token = NULL,
        lease_until = NULL,
        next_poll_at = LEAST(GREATEST(next_poll_at, :not_before), expires_at),
        updated_at = :now
    WHERE id = ANY(CAST(:ids AS bigint[])) AND lease_token = :token
      AND state = '{TaskState.PENDING}'
    """  # noqa: S608 - only enum values are interpolated
)


@dataclass(frozen=True)
class LeasedTask:
    """A task this worker holds the lease of, as the poll needs it."""

    id: int
    task_id: str
    poll_count: int
    expires_at: datetime
    lease_until: datetime
    # When the poll was due; how late it really starts is a metric.
    next_poll_at: datetime | None = None
    # The task's age counts from submitted_at; a completion arrived after the last PENDING.
    submitted_at: datetime | None = None
    last_pending_at: datetime | None = None
    source: TaskSource = TaskSource.REGISTERED
    # Its check carried a callback, and whether the client's callbacks are trusted (safety net).
    expects_callback: bool = False
    callbacks_trusted: bool = True
    # Re-checks (service/domain/rechecks.py): the upstream task polled now (None: task_id), the
    # client's policy, the re-checks made and the polls of the checks before the current one.
    upstream_task_id: str | None = None
    recheck: RecheckPolicy | None = None
    rechecks_done: int = 0
    earlier_polls: int = 0
    # Its registration's span, parent of its polls' (traces on; service/observability/traces.py).
    traceparent: str | None = None
    # The client's own p95 lag target for the schedule (None: the setting's).
    poll_target_p95_s: float | None = None

    @property
    def polled_task_id(self) -> str:
        """The upstream task a poll asks about: a re-check's, else the task's own."""
        return self.upstream_task_id or self.task_id


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
            next_poll_at=row.next_poll_at,
            submitted_at=row.submitted_at,
            last_pending_at=row.last_pending_at,
            source=TaskSource(row.source),
            expects_callback=bool(row.expects_callback),
            callbacks_trusted=bool(row.callbacks_trusted),
            upstream_task_id=row.upstream_task_id,
            recheck=None if row.recheck is None else RecheckPolicy.from_json(row.recheck),
            rechecks_done=int(row.rechecks_done),
            earlier_polls=int(row.earlier_polls),
            traceparent=row.traceparent,
            poll_target_p95_s=row.poll_target_p95_s,
        )
        for row in result
    ]


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
