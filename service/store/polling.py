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
from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.completion import EDGES
from service.domain.polling import DecisionKind, PollDecision
from service.domain.rechecks import RECHECK_NOT_SUBMITTED, RecheckPolicy
from service.domain.schedule import FIRST_POLL_MAX_WAIT_S
from service.domain.states import TaskSource, TaskState
from service.store.estimates import ACCOUNT_WIDE
from service.store.history import POLL_HISTORY_LIMIT as POLL_HISTORY_LIMIT
from service.store.history import history_appended
from service.store.leases import CANDIDATES_PER_CLAIM, claim_due
from service.store.outbox import (
    DeliveryLease,
    FinishedTask,
    record_events,
    record_events_and_deliveries,
)
from service.store.rechecks import end_scheduled_submits, schedule_rechecks

# `state = 'pending'` is written out, not a parameter, here and in the deadline sweep: only then
# can the planner use the partial indexes (ix_tasks_client_id_next_poll_at,
# ix_tasks_pending_expires_at).
#
# The claim shares the round fairly when more is due than the rate ceiling allows: clients with
# due work take turns (every client's first task, then every client's second, ...), so one
# client's backlog cannot delay another's answers. Within a client, among its most overdue tasks
# (at most CANDIDATES_PER_CLAIM x :limit, read from the index in next_poll_at order) and its
# first polls overdue by more than FIRST_POLL_MAX_WAIT_S (their own partial index: a backlog due
# earlier cannot hide them), the order is:
#
# 1. first polls (never polled: finish_p NULL) overdue by more than FIRST_POLL_MAX_WAIT_S, the
#    oldest first: the contract's first poll within about a second is never traded away;
# 2. then by the chance of finding the answer, highest first: a re-poll's `finish_p` (the
#    estimate's, written by its last poll), a first poll's the account estimate's share of answers
#    in the bins wholly below its age (a step CDF, never above the true one), so a re-poll likelier
#    to find its answer may go before a first poll that has waited less than the bound; without
#    an estimate a first poll counts as certain (it goes first, as before any is learnt).
#
# The work is bounded by those windows times the number of clients with due work, whatever the
# number of pending tasks (bench/scale.py). Rows are locked in turn order with SKIP LOCKED, and
# the limit counts only rows locked, so a concurrent claimer takes the next turns; the lease
# condition is checked again under the lock.
_CLAIM_DUE = text(
    f"""
    WITH estimate AS (
        SELECT array_agg(bins.below ORDER BY bins.i) AS cdf FROM (
            SELECT u.i, sum(u.w) OVER (ORDER BY u.i) / NULLIF(sum(u.w) OVER (), 0) AS below
            FROM completion_estimates AS e, unnest(e.weights) WITH ORDINALITY AS u(w, i)
            WHERE e.account = :account AND e.client_id = {ACCOUNT_WIDE}
        ) AS bins
    ),
    candidates AS (
        SELECT DISTINCT ON (due.id) due.*
        FROM clients AS c
        CROSS JOIN LATERAL (
            (SELECT t.id, t.client_id, t.finish_p, t.next_poll_at,
                    COALESCE(t.upstream_submitted_at, t.submitted_at) AS submitted_at
             FROM tasks AS t
             WHERE t.client_id = c.id AND t.state = '{TaskState.PENDING}'
               AND t.next_poll_at <= :now AND t.expires_at > :now
               AND (t.lease_until IS NULL OR t.lease_until < :now)
             ORDER BY t.next_poll_at
             LIMIT :limit * {CANDIDATES_PER_CLAIM})
            UNION ALL
            (SELECT t.id, t.client_id, t.finish_p, t.next_poll_at,
                    COALESCE(t.upstream_submitted_at, t.submitted_at) AS submitted_at
             FROM tasks AS t
             WHERE t.client_id = c.id AND t.state = '{TaskState.PENDING}' AND t.finish_p IS NULL
               AND t.next_poll_at <= :aged_before AND t.expires_at > :now
               AND (t.lease_until IS NULL OR t.lease_until < :now)
             ORDER BY t.next_poll_at
             LIMIT :limit)
        ) AS due
    ),
    chances AS (
        SELECT c.id, c.client_id, c.next_poll_at,
               c.finish_p IS NULL AND c.next_poll_at <= :aged_before AS aged,
               COALESCE(c.finish_p, CASE
                   WHEN e.cdf IS NULL THEN NULL
                   WHEN c.whole_bins = 0 THEN 0.0
                   ELSE e.cdf[LEAST(c.whole_bins, cardinality(e.cdf))]
               END, 1.0) AS chance
        FROM (
            SELECT candidates.*, width_bucket(
                       EXTRACT(EPOCH FROM CAST(:now AS timestamptz) - candidates.submitted_at),
                       CAST(:edges AS float8[])) - 1 AS whole_bins
            FROM candidates
        ) AS c
        LEFT JOIN estimate AS e ON true
    ),
    turns AS (
        SELECT id, next_poll_at, row_number() OVER (
            PARTITION BY client_id ORDER BY aged DESC, chance DESC, next_poll_at, id
        ) AS turn
        FROM chances
    ),
    first_turns AS (
        SELECT id, turn, next_poll_at FROM turns
        ORDER BY turn, next_poll_at, id
        LIMIT :limit * {CANDIDATES_PER_CLAIM}
    ),
    chosen AS (
        SELECT t.id FROM first_turns AS f JOIN tasks AS t ON t.id = f.id
        WHERE t.state = '{TaskState.PENDING}' AND (t.lease_until IS NULL OR t.lease_until < :now)
        ORDER BY f.turn, f.next_poll_at, t.id
        LIMIT :limit
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasks SET lease_token = :token, lease_until = :lease_until
    WHERE id IN (SELECT id FROM chosen)
    RETURNING id
    """  # noqa: S608 - only constants and enum values are interpolated
)

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


async def claim_due_tasks(
    session: AsyncSession,
    now: datetime,
    lease_s: float,
    limit: int,
    *,
    account: str | None = None,
) -> tuple[uuid.UUID, list[int]]:
    """Lease up to `limit` due pending tasks, shared fairly across clients (see _CLAIM_DUE), a
    first poll's chance read off `account`'s estimate (None: first polls first); returns the
    lease token and ids.

    Rows another claimer holds locked are skipped, and a live lease excludes a row, so concurrent
    schedulers never claim the same task for the same round.
    """
    # The planner cannot know how few rows the per-client windows hold and would compile the
    # statement with JIT, which alone cost ~45 ms a round in bench/scale.py.
    await session.execute(text("SET LOCAL jit = off"))
    return await claim_due(
        session,
        _CLAIM_DUE,
        now,
        lease_s,
        limit,
        {
            "account": account,
            "aged_before": now - timedelta(seconds=FIRST_POLL_MAX_WAIT_S),
            "edges": list(EDGES),
        },
    )


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
            finished.append(_finished(row, traceparents.get(int(row.id))))
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


async def expire_overdue_tasks(
    session: AsyncSession, now: datetime, limit: int
) -> list[FinishedTask]:
    """Expire up to `limit` pending tasks past their deadline that nobody holds a live lease on
    (one waiting for a re-check completes with its answer instead), write their events and erase
    their kept numbers. Returns the tasks that ended."""
    rows = (await session.execute(_EXPIRE_OVERDUE, {"now": now, "limit": limit})).all()
    expired = [_finished(row) for row in rows]
    await record_events(session, expired, now)
    await end_scheduled_submits(session, [int(row.id) for row in rows if row.has_recheck], now)
    return expired


def _finished(row: Row[Any], traceparent: str | None = None) -> FinishedTask:
    return FinishedTask.from_row_json(
        int(row.id),
        int(row.client_id),
        str(row.task_id),
        TaskState(row.state),
        str(row.row_json),
        traceparent,
    )
