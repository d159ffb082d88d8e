"""Scheduled submits: the durable queue of numbers to submit upstream later (a re-check's now, a
check job's items later), sent by the engine under the shared rate ceiling.

The write order is the point, as for `POST /v1/checks` (service/store/checks.py). A row is
`waiting` with its sealed number and `due_at`. The scheduler claims due rows under a lease
(`claim_due_submits`: fair between clients, FOR UPDATE SKIP LOCKED); the worker marks a row
`submitting` and commits (`begin_submit`) before it calls upstream, then writes upstream's answer
and the row's next state in one transaction (service/store/rechecks.py for a re-check). A row
still `submitting` once its lease has passed was being submitted by a worker that died: its
outcome is unknown, and the purpose's own module marks it so (service/store/rechecks.py,
`end_lost_rechecks`); nothing ever submits it again.

Locks are taken task first, then row, in every statement that touches both (here, the cancel,
the poll write-back, the deadline sweep and the re-checks' writes), so none can deadlock another.

How to extend (check jobs): rows of another `purpose`, with `task_pk` NULL until the item's task
exists and a reference to the item; the claim, the lease, `begin_submit` and `hand_back_submit`
are the same; what a submit's answer does, and what a lost one means, is the purpose's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.rechecks import RecheckPolicy
from service.domain.states import ScheduledSubmitPurpose, ScheduledSubmitState, TaskState
from service.store.leases import CANDIDATES_PER_CLAIM, claim_due

_WAITING = ScheduledSubmitState.WAITING
_SUBMITTING = ScheduledSubmitState.SUBMITTING

# The claim shares a round fairly when more is due than the rate allows, as the poll claim does
# (service/store/poll_claims.py): clients take turns, each client's soonest due first, read from the
# partial index ix_scheduled_submits_client_id_due_at. Only the first turns (a few times the limit)
# are joined back to the table to be locked: joined whole, the planner scanned every row of the
# table (446 ms at 1,000,000 queued job items against 24 ms at 10,000, bench/jobs.py part d).
_CLAIM_DUE = text(
    f"""
    WITH candidates AS (
        SELECT due.id, due.client_id, due.due_at
        FROM clients AS c
        CROSS JOIN LATERAL (
            SELECT s.id, s.client_id, s.due_at FROM scheduled_submits AS s
            WHERE s.client_id = c.id AND s.state = '{_WAITING}' AND s.due_at <= :now
              AND (s.lease_until IS NULL OR s.lease_until < :now)
            ORDER BY s.due_at
            LIMIT :limit
        ) AS due
    ),
    turns AS (
        SELECT id, due_at, row_number() OVER (PARTITION BY client_id ORDER BY due_at, id) AS turn
        FROM candidates
    ),
    first_turns AS (
        SELECT id, turn, due_at FROM turns
        ORDER BY turn, due_at, id
        LIMIT :limit * {CANDIDATES_PER_CLAIM}
    ),
    chosen AS (
        SELECT s.id FROM first_turns AS f JOIN scheduled_submits AS s ON s.id = f.id
        WHERE s.state = '{_WAITING}' AND (s.lease_until IS NULL OR s.lease_until < :now)
        ORDER BY f.turn, f.due_at, s.id
        LIMIT :limit
        FOR UPDATE OF s SKIP LOCKED
    )
    UPDATE scheduled_submits SET lease_token = :token, lease_until = :lease_until
    WHERE id IN (SELECT id FROM chosen)
    RETURNING id
    """  # noqa: S608 - only constants and enum values are interpolated
)

# What the workers hold to send (service/domain/claims_ahead.py), from the partial index
# ix_scheduled_submits_claimed_lease_until: only claimed waiting rows are in it, never the queue.
_CLAIMED_UNSENT = text(
    f"""
    SELECT count(*) FROM scheduled_submits
    WHERE state = '{_WAITING}' AND lease_until IS NOT NULL AND lease_until > :now
    """  # noqa: S608 - only an enum value is interpolated
)

_LOAD_CLAIMED = text(
    f"""
    SELECT s.id, s.client_id, s.task_pk, s.purpose, s.phone_number_sealed, s.lease_until,
           t.task_id, t.recheck, jsonb_array_length(t.rechecks) AS rechecks_done, t.expires_at
    FROM scheduled_submits s JOIN tasks t ON t.id = s.task_pk
    WHERE s.id = ANY(CAST(:ids AS bigint[])) AND s.lease_token = :token
      AND s.state = '{_WAITING}' AND s.lease_until > :now AND t.state = '{TaskState.PENDING}'
    ORDER BY s.id
    """  # noqa: S608 - only enum values are interpolated
)

# The task first (see the module's docstring), then the row; the task is leased with the row, so
# neither a poll claim nor the deadline sweep touches it while its submit is in flight.
_BEGIN = text(
    f"""
    WITH task AS (
        SELECT id FROM tasks WHERE id = :task_pk AND state = '{TaskState.PENDING}' FOR UPDATE
    ),
    marked AS (
        UPDATE scheduled_submits SET state = '{_SUBMITTING}', lease_until = :lease_until,
                                     updated_at = :now
        WHERE id = :id AND task_pk = (SELECT id FROM task) AND lease_token = :token
          AND state = '{_WAITING}' AND lease_until > :now
        RETURNING task_pk
    )
    UPDATE tasks SET lease_token = :token, lease_until = :lease_until
    WHERE id = (SELECT task_pk FROM marked)
    RETURNING id
    """  # noqa: S608 - only enum values are interpolated
)

# Handed back without a call (the pause, no slot soon enough, too little lease left) or after an
# answer that surely took nothing upstream: waiting again, due no earlier than `due_at`.
_HAND_BACK = text(
    f"""
    WITH task AS (SELECT id FROM tasks WHERE id = :task_pk FOR UPDATE),
    row AS (
        UPDATE scheduled_submits SET state = '{_WAITING}', due_at = GREATEST(due_at, :due_at),
                                     lease_token = NULL, lease_until = NULL, updated_at = :now
        WHERE id = :id AND lease_token = :token AND state IN ('{_WAITING}', '{_SUBMITTING}')
          AND task_pk IS NOT DISTINCT FROM (SELECT id FROM task)
        RETURNING task_pk
    )
    UPDATE tasks SET lease_token = NULL, lease_until = NULL
    WHERE id = (SELECT task_pk FROM row) AND lease_token = :token
    RETURNING id
    """  # noqa: S608 - only enum values are interpolated
)

_HOLD = text(
    f"""
    INSERT INTO scheduled_submits (client_id, task_pk, purpose, state, phone_number_sealed,
                                   due_at, created_at, updated_at)
    VALUES (:client_id, :task_pk, '{ScheduledSubmitPurpose.RECHECK}',
            CASE WHEN CAST(:due_at AS timestamptz) IS NULL THEN '{ScheduledSubmitState.STANDBY}'
                 ELSE '{_WAITING}' END,
            :sealed, :due_at, :now, :now)
    ON CONFLICT (task_pk) DO NOTHING
    """  # noqa: S608 - only enum values are interpolated
)


@dataclass(frozen=True)
class ClaimedSubmit:
    """A waiting re-check leased to this worker, with what its submit needs."""

    id: int
    client_id: int
    task_pk: int
    # The task's public (first) task_id: what the sealed number is bound to.
    task_id: str
    phone_number_sealed: bytes
    lease_until: datetime
    recheck: RecheckPolicy
    rechecks_done: int
    expires_at: datetime


async def hold_number_for_rechecks(
    session: AsyncSession,
    *,
    client_id: int,
    task_pk: int,
    sealed: bytes,
    due_at: datetime | None,
    now: datetime,
) -> None:
    """Keep a check's sealed number for its re-checks: on standby until its answer is in, or
    waiting for `due_at` when it already has one that asks for a re-check."""
    await session.execute(
        _HOLD,
        {
            "client_id": client_id,
            "task_pk": task_pk,
            "sealed": sealed,
            "due_at": due_at,
            "now": now,
        },
    )


async def claim_due_submits(
    session: AsyncSession, now: datetime, lease_s: float, limit: int
) -> tuple[uuid.UUID, list[int]]:
    """Lease up to `limit` due waiting submits, shared fairly across clients; the lease token and
    the ids. Rows locked by another claimer are skipped, and a live lease excludes a row."""
    await session.execute(text("SET LOCAL jit = off"))
    return await claim_due(session, _CLAIM_DUE, now, lease_s, limit)


async def count_claimed_unsent(session: AsyncSession, now: datetime) -> int:
    """The submits claimed and still waiting under a live lease: neither begun (`submitting`) nor
    handed back yet, whatever their purpose."""
    return int((await session.execute(_CLAIMED_UNSENT, {"now": now})).scalar_one())


async def load_claimed_submits(
    session: AsyncSession, ids: Sequence[int], token: uuid.UUID, now: datetime
) -> list[ClaimedSubmit]:
    """The submits among `ids` still leased under `token`, still waiting, their task pending."""
    result = await session.execute(_LOAD_CLAIMED, {"ids": list(ids), "token": token, "now": now})
    return [_claimed(row) for row in result]


async def begin_submit(
    session: AsyncSession,
    submit: ClaimedSubmit,
    token: uuid.UUID,
    now: datetime,
    lease_until: datetime,
) -> bool:
    """Mark a claimed submit `submitting` until `lease_until` (and lease its task with it); the
    caller commits before calling upstream. False when it is no longer ours to submit."""
    row = (
        await session.execute(
            _BEGIN,
            {
                "id": submit.id,
                "task_pk": submit.task_pk,
                "token": token,
                "now": now,
                "lease_until": lease_until,
            },
        )
    ).one_or_none()
    return row is not None


async def hand_back_submit(
    session: AsyncSession,
    submit: ClaimedSubmit,
    token: uuid.UUID,
    now: datetime,
    due_at: datetime,
) -> None:
    """Give a submit back, waiting again from `due_at`, when nothing of it reached upstream."""
    await session.execute(
        _HAND_BACK,
        {"id": submit.id, "task_pk": submit.task_pk, "token": token, "now": now, "due_at": due_at},
    )


def _claimed(row: Row[Any]) -> ClaimedSubmit:
    return ClaimedSubmit(
        id=int(row.id),
        client_id=int(row.client_id),
        task_pk=int(row.task_pk),
        task_id=str(row.task_id),
        phone_number_sealed=bytes(row.phone_number_sealed),
        lease_until=row.lease_until,
        recheck=RecheckPolicy.from_json(row.recheck),
        rechecks_done=int(row.rechecks_done),
        expires_at=row.expires_at,
    )


@dataclass(frozen=True, slots=True)
class SealedRecheckNumber:
    """A re-check's sealed number as stored, with what it is bound to (its client and task's
    first task_id), for resealing it under a new key."""

    id: int
    client_id: int
    task_id: str
    phone_number_sealed: bytes


_SEALED_RECHECK_NUMBERS = text(
    f"""
    SELECT s.id, s.client_id, t.task_id, s.phone_number_sealed
    FROM scheduled_submits s JOIN tasks t ON t.id = s.task_pk
    WHERE s.purpose = '{ScheduledSubmitPurpose.RECHECK}' AND s.phone_number_sealed IS NOT NULL
      AND s.id > :after_id
    ORDER BY s.id
    LIMIT :limit
    """  # noqa: S608 - only enum values are interpolated
)

_REPLACE_SEALED_NUMBER = text(
    """
    UPDATE scheduled_submits SET phone_number_sealed = :sealed
    WHERE id = :id AND phone_number_sealed = :read
    RETURNING id
    """
)


async def sealed_recheck_numbers_after(
    session: AsyncSession, after_id: int, limit: int
) -> list[SealedRecheckNumber]:
    """The re-checks' sealed numbers still kept, in id order after `after_id`, at most `limit`."""
    rows = await session.execute(_SEALED_RECHECK_NUMBERS, {"after_id": after_id, "limit": limit})
    return [
        SealedRecheckNumber(
            id=int(row.id),
            client_id=int(row.client_id),
            task_id=str(row.task_id),
            phone_number_sealed=bytes(row.phone_number_sealed),
        )
        for row in rows
    ]


class SealedNumberRead(Protocol):
    """A sealed number as read from its scheduled submit (a re-check's or a job item's)."""

    @property
    def id(self) -> int: ...

    @property
    def phone_number_sealed(self) -> bytes: ...


async def replace_sealed_number(
    session: AsyncSession, read: SealedNumberRead, sealed: bytes
) -> bool:
    """Write a resealed number into its scheduled submit (of any purpose), unless the row's number
    changed (or was erased) since `read`."""
    result = await session.execute(
        _REPLACE_SEALED_NUMBER, {"id": read.id, "read": read.phone_number_sealed, "sealed": sealed}
    )
    return result.scalar_one_or_none() is not None
