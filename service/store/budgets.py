"""The daily check budget's ledger (`client_check_days`: the upstream checks each client caused on
each UTC day) and the check jobs it pauses and resumes.

`take_checks` counts checks in the transaction that writes their intent (a single check's
submission row, a scheduled submit marked `submitting`), before any call: a process that dies
after the commit has counted its check (an unknown outcome counts), and two processes cannot both
take the last check of a day, because the upsert's row lock makes the second wait for the first
and then see its count. A submit that surely reached nothing upstream gives its check back
(`give_back_checks`). Callers skip the ledger entirely when no limit applies
(service/domain/budgets.py): no limit, no query.

Jobs: when a client's budget refuses one of its submits, its queued and running jobs go `paused`
(`budget`) and their waiting submits `standby`, so the claim stops finding them
(`pause_jobs_for_budget`); the scheduler moves them back, `running` and `waiting`, once the
budget allows a check again: a new UTC day or a raised limit (`resume_jobs_for_budget`). Each
move is `service.domain.job_lifecycle.move_job`'s and is written guarded by the status it was
decided from, so a client's move in between wins.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.budgets import budget_applies, daily_check_limit, fits, utc_day
from service.domain.job_lifecycle import JobMove, JobStatus, move_job
from service.domain.states import (
    JobState,
    PausedReason,
    ScheduledSubmitPurpose,
    ScheduledSubmitState,
)

_PAUSED = JobState.PAUSED
_BUDGET = PausedReason.BUDGET
_STANDBY = ScheduledSubmitState.STANDBY
_WAITING = ScheduledSubmitState.WAITING
_JOB_ITEM = ScheduledSubmitPurpose.JOB_ITEM

# All or nothing: the row is created with `n` (the caller never asks for more than the limit),
# or raised by `n` only while that stays within the limit. No row back: refused.
_TAKE = text(
    """
    INSERT INTO client_check_days AS d (client_id, day, checks)
    VALUES (:client_id, :day, :n)
    ON CONFLICT (client_id, day) DO UPDATE SET checks = d.checks + :n
    WHERE d.checks + :n <= :limit
    RETURNING d.checks
    """
)

_GIVE_BACK = text(
    """
    UPDATE client_check_days SET checks = GREATEST(checks - :n, 0)
    WHERE client_id = :client_id AND day = :day
    """
)

# The ledger is one row per client and day: the old days are few, found by a scan.
_PURGE_DAYS = text(
    """
    DELETE FROM client_check_days WHERE (client_id, day) IN (
        SELECT client_id, day FROM client_check_days WHERE day < :kept_from
        LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    """
)

_CHECKS_ON = text("SELECT checks FROM client_check_days WHERE client_id = :client_id AND day = :d")

_OWN_LIMITS = text(
    """
    SELECT id, max_checks_per_day FROM clients
    WHERE id = ANY(CAST(:ids AS bigint[]))
      AND (max_checks_per_day IS NOT NULL OR CAST(:setting AS integer) > 0)
    """
)

# A client's jobs the budget may pause, locked in id order (every writer of a job locks it before
# its submits).
_ACTIVE_JOBS = text(
    f"""
    SELECT id, state, paused_reason FROM check_jobs
    WHERE client_id = :client_id AND state IN ('{JobState.QUEUED}', '{JobState.RUNNING}')
    ORDER BY id
    FOR UPDATE
    """  # noqa: S608 - only enum values are interpolated
)

# The budget-paused jobs whose client may cause a check today, read from the partial index of
# active jobs. A job locked by another writer (its client's move) is left for the next round.
_RESUMABLE_JOBS = text(
    f"""
    SELECT j.id, j.client_id, j.state, j.paused_reason
    FROM check_jobs AS j
    JOIN clients AS c ON c.id = j.client_id
    LEFT JOIN client_check_days AS d ON d.client_id = j.client_id AND d.day = :day
    WHERE j.state = '{_PAUSED}' AND j.paused_reason = '{_BUDGET}'
      AND (COALESCE(c.max_checks_per_day, :setting) = 0
           OR COALESCE(d.checks, 0) < COALESCE(c.max_checks_per_day, :setting))
    ORDER BY j.id
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED
    """  # noqa: S608 - only enum values are interpolated
)

_MOVE_JOB = text(
    """
    UPDATE check_jobs SET state = :to_state, paused_reason = :to_reason, updated_at = :now
    WHERE id = :id AND state = :from_state AND paused_reason IS NOT DISTINCT FROM :from_reason
    RETURNING id
    """
)

# Out of the claim's sight: a paused job's submits wait on standby, unleased (a worker holding
# one of them finds it no longer waiting and leaves it).
_STANDBY_SUBMITS = text(
    f"""
    UPDATE scheduled_submits SET state = '{_STANDBY}', lease_token = NULL, lease_until = NULL,
                                 updated_at = :now
    WHERE job_pk = ANY(CAST(:job_pks AS bigint[])) AND purpose = '{_JOB_ITEM}'
      AND state = '{_WAITING}'
    """  # noqa: S608 - only enum values are interpolated
)

# Back in the claim's sight, due now at the latest (an item handed back to wait for the next day
# must not wait longer than its job's budget does).
_WAKE_SUBMITS = text(
    f"""
    UPDATE scheduled_submits SET state = '{_WAITING}', due_at = LEAST(due_at, :now),
                                 updated_at = :now
    WHERE job_pk = ANY(CAST(:job_pks AS bigint[])) AND purpose = '{_JOB_ITEM}'
      AND state = '{_STANDBY}'
    """  # noqa: S608 - only enum values are interpolated
)


async def take_checks(
    session: AsyncSession, *, client_id: int, day: date, n: int, limit: int
) -> bool:
    """Count `n` checks of the client on `day` if they all fit under `limit` (above 0); False,
    counting none, when they do not."""
    if not fits(0, n, limit):
        return False
    taken = await session.execute(
        _TAKE, {"client_id": client_id, "day": day, "n": n, "limit": limit}
    )
    return taken.one_or_none() is not None


async def give_back_checks(session: AsyncSession, *, client_id: int, day: date, n: int) -> None:
    """Uncount `n` checks of `day` that surely reached nothing upstream."""
    await session.execute(_GIVE_BACK, {"client_id": client_id, "day": day, "n": n})


async def checks_on(session: AsyncSession, client_id: int, day: date) -> int:
    """The checks the client caused on `day`, as counted."""
    counted = (await session.execute(_CHECKS_ON, {"client_id": client_id, "d": day})).scalar()
    return int(counted or 0)


async def purge_ledger_days(session: AsyncSession, kept_from: date, limit: int) -> int:
    """Delete up to `limit` of the ledger's rows of days before `kept_from`; returns how many
    went."""
    result = await session.execute(_PURGE_DAYS, {"kept_from": kept_from, "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def daily_limits(
    session: AsyncSession, client_ids: Collection[int], setting: int
) -> dict[int, int]:
    """The daily limit that applies to each of these clients, for those that have one (above 0);
    with the setting off, only clients with a value of their own are read."""
    if not client_ids:
        return {}
    rows = await session.execute(_OWN_LIMITS, {"ids": sorted(client_ids), "setting": setting})
    limits = {int(row.id): daily_check_limit(row.max_checks_per_day, setting) for row in rows}
    return {client_id: limit for client_id, limit in limits.items() if budget_applies(limit)}


@dataclass(frozen=True, slots=True)
class BudgetMovedJob:
    """A job the budget paused or resumed."""

    id: int
    client_id: int


async def pause_jobs_for_budget(
    session: AsyncSession, client_id: int, now: datetime
) -> list[BudgetMovedJob]:
    """Pause the client's queued and running jobs for its spent budget, their waiting submits
    put on standby; the jobs moved."""
    rows = (await session.execute(_ACTIVE_JOBS, {"client_id": client_id})).all()
    moved = await _move_jobs(
        session, [(int(r.id), client_id, r.state, r.paused_reason) for r in rows], now, pause=True
    )
    if moved:
        await session.execute(_STANDBY_SUBMITS, {"job_pks": [j.id for j in moved], "now": now})
    return moved


async def resume_jobs_for_budget(
    session: AsyncSession, now: datetime, setting: int, limit: int
) -> list[BudgetMovedJob]:
    """Resume up to `limit` budget-paused jobs whose client may cause a check on `now`'s UTC day
    (a new day, or a limit raised or lifted), their submits waiting again; the jobs moved."""
    rows = (
        await session.execute(
            _RESUMABLE_JOBS, {"day": utc_day(now), "setting": setting, "limit": limit}
        )
    ).all()
    moved = await _move_jobs(
        session,
        [(int(r.id), int(r.client_id), r.state, r.paused_reason) for r in rows],
        now,
        pause=False,
    )
    if moved:
        await session.execute(_WAKE_SUBMITS, {"job_pks": [j.id for j in moved], "now": now})
    return moved


async def _move_jobs(
    session: AsyncSession,
    jobs: list[tuple[int, int, str, str | None]],
    now: datetime,
    *,
    pause: bool,
) -> list[BudgetMovedJob]:
    move = JobMove.BUDGET_EXHAUSTED if pause else JobMove.BUDGET_RESTORED
    moved: list[BudgetMovedJob] = []
    for job_id, client_id, state, reason in jobs:
        status = JobStatus(JobState(state), None if reason is None else PausedReason(reason))
        after = move_job(status, move)
        assert isinstance(after, JobStatus)  # the system's moves are never refused
        if after == status:
            continue
        written = await session.execute(
            _MOVE_JOB,
            {
                "id": job_id,
                "from_state": status.state.value,
                "from_reason": None if status.paused_reason is None else status.paused_reason.value,
                "to_state": after.state.value,
                "to_reason": None if after.paused_reason is None else after.paused_reason.value,
                "now": now,
            },
        )
        if written.one_or_none() is not None:
            moved.append(BudgetMovedJob(job_id, client_id))
    return moved
