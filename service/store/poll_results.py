"""The write-back of a poll's outcome: each leased task's decision written, the events and
deliveries of the states that are final, the re-checks the answers ask for, in one transaction.

Time is always a parameter (`now`), never `now()` hidden in SQL. Every write is guarded by
`lease_token = :token AND state = 'pending'`, so a late or duplicated message, a lease taken over
by someone else, or a cancel in between makes the write change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.polling import DecisionKind, PollDecision
from service.domain.states import TaskState
from service.store.history import history_appended
from service.store.outbox import DeliveryLease, FinishedTask, record_events_and_deliveries
from service.store.rechecks import end_scheduled_submits, schedule_rechecks

# Each task keeps its last POLL_HISTORY_LIMIT upstream calls in `poll_history` (history.py).

# The input is one JSON document (orjson builds it in C) rather than one array per column, which
# the driver would escape element by element. The rows are locked in id order before any is
# written, so two writers holding overlapping rows cannot deadlock: the UPDATE only reaches rows
# through `locked`. Final rows come back as JSON, the source of their events' data (outbox.py).
_WRITE_BACK = text(
    f"""
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(CAST(:writes AS jsonb)) AS v(
            id bigint, state text, poll_count integer, next_poll_at timestamptz,
            completed_at timestamptz, result jsonb, last_error jsonb, request_id text,
            poll jsonb, last_pending_at timestamptz, finish_p real, called_at timestamptz,
            expires_at timestamptz, answered_at timestamptz)
    ),
    locked AS (
        SELECT id FROM tasks
        WHERE id IN (SELECT id FROM input) AND lease_token = :token
          AND state = '{TaskState.PENDING}'
        ORDER BY id
        FOR UPDATE
    )
    UPDATE tasks AS t SET
        state = v.state,
        poll_count = v.poll_count,
        -- A callback that came while the call was in flight may announce an answer the call
        -- was too early to see: it keeps the task due (or due when its interval ends). Not a
        -- task that has its answer and waits for a re-check (no poll planned).
        next_poll_at = CASE WHEN v.state = '{TaskState.PENDING}' AND v.next_poll_at IS NOT NULL
                                 AND t.last_hint_at > v.called_at
                            THEN LEAST(v.next_poll_at, GREATEST(t.last_hint_at, :now))
                            ELSE v.next_poll_at END,
        expires_at = COALESCE(v.expires_at, t.expires_at),
        answered_at = COALESCE(v.answered_at, t.answered_at),
        completed_at = v.completed_at,
        result = COALESCE(v.result, t.result),
        last_error = COALESCE(v.last_error, t.last_error),
        upstream_request_id = COALESCE(v.request_id, t.upstream_request_id),
        poll_history = CASE WHEN v.poll IS NULL THEN t.poll_history
                            ELSE {history_appended("t.poll_history", "v.poll")} END,
        last_pending_at = COALESCE(v.last_pending_at, t.last_pending_at),
        finish_p = v.finish_p,
        lease_token = NULL,
        lease_until = NULL,
        updated_at = :now
    FROM input v JOIN locked USING (id)
    WHERE t.id = v.id AND t.lease_token = :token AND t.state = '{TaskState.PENDING}'
    RETURNING t.id, t.client_id, t.task_id, t.state,
              CASE WHEN t.state <> '{TaskState.PENDING}' THEN row_to_json(t)::text END AS row_json,
              t.expects_callback, t.last_hint_at IS NOT NULL AS hinted,
              v.result IS NOT NULL AS answered, t.recheck IS NOT NULL AS has_recheck
    """  # noqa: S608 - only enum values are interpolated
)


@dataclass(frozen=True)
class WrittenTask:
    """A task whose poll result was written (its lease was still ours)."""

    id: int
    task_id: str
    state: TaskState
    client_id: int
    # Its check carried a callback; whether one had arrived when the row was written.
    expects_callback: bool = False
    hinted: bool = False
    # This write brought an answer (final, or one a re-check follows); the task has `recheck`.
    answered: bool = False
    has_recheck: bool = False


@dataclass(frozen=True)
class PolledAnswer:
    """One upstream answer as the task's poll history keeps it."""

    at: datetime
    code: str
    status: int | None
    request_id: str | None
    latency_ms: int

    @property
    def called_at(self) -> datetime:
        """When the call was sent."""
        return self.at - timedelta(milliseconds=self.latency_ms)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "code": self.code,
            "status": self.status,
            "request_id": self.request_id,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True)
class PollWrite:
    """The decision to write for one leased task, and the answer it came from (None when no
    call was made, e.g. a deadline that passed before the poll)."""

    id: int
    decision: PollDecision
    polled: PolledAnswer | None = None
    # The poll's span (traces on): the parent of the webhook attempts of the event it brings.
    traceparent: str | None = None


async def record_poll_results(
    session: AsyncSession, token: uuid.UUID, writes: Sequence[PollWrite], now: datetime
) -> list[WrittenTask]:
    """Write each decision, guarded by the lease, and the events of final states (same
    transaction). Returns the tasks written; rows whose lease was lost are left untouched."""
    written, _ = await record_poll_results_leasing_deliveries(session, token, writes, now, None)
    return written


async def record_poll_results_leasing_deliveries(
    session: AsyncSession,
    token: uuid.UUID,
    writes: Sequence[PollWrite],
    now: datetime,
    deliveries_leased_until: datetime | None,
) -> tuple[list[WrittenTask], list[int]]:
    """`record_poll_results`, with the new deliveries leased under the batch's `token` until
    `deliveries_leased_until` (when given) for the caller to send; answers their ids too."""
    if not writes:
        return [], []
    rows = [
        {
            "id": write.id,
            "state": write.decision.state,
            "poll_count": write.decision.poll_count,
            "next_poll_at": write.decision.next_poll_at,
            "completed_at": write.decision.completed_at,
            "result": write.decision.result.as_json() if write.decision.result else None,
            "last_error": write.decision.last_error,
            "request_id": write.decision.upstream_request_id,
            "poll": write.polled.as_json() if write.polled is not None else None,
            "last_pending_at": write.decision.last_pending_at,
            "finish_p": write.decision.finish_p,
            "called_at": write.polled.called_at if write.polled is not None else None,
            "expires_at": write.decision.expires_at,
            "answered_at": _answered_at(write),
        }
        for write in writes
    ]
    result = await session.execute(
        _WRITE_BACK, {"writes": orjson.dumps(rows).decode(), "token": token, "now": now}
    )
    written: list[WrittenTask] = []
    finished: list[FinishedTask] = []
    traceparents = {write.id: write.traceparent for write in writes if write.traceparent}
    for row in result:
        written.append(
            WrittenTask(
                int(row.id),
                str(row.task_id),
                TaskState(row.state),
                int(row.client_id),
                expects_callback=bool(row.expects_callback),
                hinted=bool(row.hinted),
                answered=bool(row.answered),
                has_recheck=bool(row.has_recheck),
            )
        )
        if row.row_json is not None:
            finished.append(FinishedTask.from_returned_row(row, traceparents.get(int(row.id))))
    await _advance_rechecks(session, writes, written, now)
    lease = None
    if deliveries_leased_until is not None:
        lease = DeliveryLease(token, deliveries_leased_until)
    recorded = await record_events_and_deliveries(session, finished, now, lease)
    return written, recorded.delivery_ids


def _answered_at(write: PollWrite) -> datetime | None:
    """When the answer a task keeps while it waits for a re-check came."""
    if write.decision.kind is not DecisionKind.RECHECK or write.polled is None:
        return None
    return write.polled.at


async def _advance_rechecks(
    session: AsyncSession,
    writes: Sequence[PollWrite],
    written: Sequence[WrittenTask],
    now: datetime,
) -> None:
    """In the write-back's transaction, after its tasks (locked first): the re-checks their
    answers ask for become due, and the numbers of the tasks that ended are erased."""
    concerned = {task.id: task for task in written if task.has_recheck}
    if not concerned:
        return
    due = [
        (write.id, write.decision.recheck_at)
        for write in writes
        if write.id in concerned and write.decision.recheck_at is not None
    ]
    await schedule_rechecks(session, due, now)
    ended = [task.id for task in concerned.values() if task.state.is_final]
    await end_scheduled_submits(session, ended, now)
