"""Check jobs as stored: a job found, listed and moved, the moves of its items' scheduled
submits, and its progress. (Its creation, in one transaction, is service/store/
check_job_creation.py's; its result rows and rejections as a client reads them,
check_job_results.py's; the jobs the engine's moves look at, job_moves.py's.)

A job's status is written guarded by the status it was read with (`write_status`): of two moves
at once, the second finds the row changed and is refused or retried, never applied blindly.

The items' scheduled submits follow their job: `standby` while it is a draft or paused,
`waiting` (due now) while it may submit, `done` with the number erased when it is cancelled
(`hold_submits`, `release_submits`, `end_unsubmitted`). The engine's side (claim, submit,
answers) is in service/store/job_items.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.job_lifecycle import JobStatus
from service.domain.job_plan import JobCounts
from service.domain.states import (
    JobItemState,
    JobState,
    PausedReason,
    ScheduledSubmitState,
    TaskState,
)
from service.domain.verdicts import verdict_of

JOB_COLUMNS = (
    "id, public_id, client_id, name, state, paused_reason, max_age_s, recheck, "
    "idempotency_key, fingerprint, items, rejected, duplicates, cached, created_at, "
    "updated_at, started_at, finished_at, final_counts"
)


@dataclass(frozen=True, slots=True)
class JobRow:
    """A check job as stored; its planned counts are fixed at creation."""

    id: int
    public_id: str
    client_id: int
    name: str | None
    state: JobState
    paused_reason: PausedReason | None
    max_age_s: int
    recheck: dict[str, Any] | None
    idempotency_key: str | None
    fingerprint: bytes | None
    items: int
    rejected: int
    duplicates: int
    cached: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # The progress of its counts, kept once it can no longer change (JobCounts.progress_json).
    final_counts: dict[str, Any] | None = None

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.state, self.paused_reason)

    @property
    def planned(self) -> JobCounts:
        return JobCounts(
            items=self.items, rejected=self.rejected, duplicates=self.duplicates, cached=self.cached
        )


_FIND_JOB = text(
    f"SELECT {JOB_COLUMNS} FROM check_jobs WHERE client_id = :client_id AND public_id = :public_id"  # noqa: S608
)
_FIND_JOB_BY_KEY = text(
    f"SELECT {JOB_COLUMNS} FROM check_jobs WHERE client_id = :client_id AND idempotency_key = :key"  # noqa: S608
)
_JOB_BY_PK = text(f"SELECT {JOB_COLUMNS} FROM check_jobs WHERE id = :id")  # noqa: S608

_WRITE_STATUS = text(
    f"""
    UPDATE check_jobs
    SET state = CAST(:state AS text), paused_reason = CAST(:paused_reason AS text),
        updated_at = :now,
        started_at = CASE WHEN CAST(:state AS text) NOT IN ('{JobState.DRAFT}')
                          THEN COALESCE(started_at, CAST(:now AS timestamptz)) END,
        finished_at = CASE WHEN CAST(:state AS text)
                                IN ('{JobState.COMPLETED}', '{JobState.CANCELLED}')
                           THEN COALESCE(finished_at, CAST(:now AS timestamptz)) END
    WHERE id = :id AND state = CAST(:expected_state AS text)
      AND paused_reason IS NOT DISTINCT FROM CAST(:expected_reason AS text)
    RETURNING {JOB_COLUMNS}
    """  # noqa: S608 - only enum values are interpolated
)

_STANDBY = ScheduledSubmitState.STANDBY
_WAITING = ScheduledSubmitState.WAITING

# Pause: a submit already claimed but not yet begun finds its row no longer waiting and is
# skipped (begin_job_submit wants `waiting`); one already `submitting` goes on and is reported.
_HOLD_SUBMITS = text(
    f"""
    UPDATE scheduled_submits SET state = '{_STANDBY}', lease_token = NULL, lease_until = NULL,
                                 updated_at = :now
    WHERE job_pk = :job_pk AND state = '{_WAITING}'
    """  # noqa: S608 - only enum values are interpolated
)

_RELEASE_SUBMITS = text(
    f"""
    UPDATE scheduled_submits SET state = '{_WAITING}', due_at = :now, lease_token = NULL,
                                 lease_until = NULL, updated_at = :now
    WHERE job_pk = :job_pk AND state = '{_STANDBY}'
    """  # noqa: S608 - only enum values are interpolated
)

# Cancel: what was not submitted never will be; its number goes at once. Then its items: an item
# still `waiting` whose submit is `done` was ended just now (a submit that ends otherwise moves its
# item in the same transaction). Two statements, the items found through their submit's unique
# index: joined to the first statement's RETURNING in a CTE, a job too new for ANALYZE to have
# counted got a nested loop over both sides (a cancel of 100,000 items ran for minutes).
_END_UNSUBMITTED_SUBMITS = text(
    f"""
    UPDATE scheduled_submits
    SET state = '{ScheduledSubmitState.DONE}', phone_number_sealed = NULL, due_at = NULL,
        lease_token = NULL, lease_until = NULL, updated_at = :now
    WHERE job_pk = :job_pk AND state IN ('{_STANDBY}', '{_WAITING}')
    """  # noqa: S608 - only enum values are interpolated
)
_END_UNSUBMITTED_ITEMS = text(
    f"""
    UPDATE check_job_items AS i SET state = '{JobItemState.NOT_SUBMITTED}'
    FROM scheduled_submits AS s
    WHERE i.job_pk = :job_pk AND i.state = '{JobItemState.WAITING}'
      AND s.job_pk = i.job_pk AND s.job_line = i.line
      AND s.state = '{ScheduledSubmitState.DONE}'
    """  # noqa: S608 - only enum values are interpolated
)

_TASKS_BY_STATE = text("SELECT state, count(*) FROM tasks WHERE job_pk = :job_pk GROUP BY state")

# The task that answers each result row: its own (submitted), the earlier check (cached), or,
# for a duplicate, its first item's; ROWS_FROM joins it to every item (the progress's counts and
# service/store/check_job_results.py's rows).
_ANSWERING_TASK = "CASE WHEN i.first_line IS NULL THEN i.task_pk ELSE f.task_pk END"
ROWS_FROM = f"""
    FROM check_job_items AS i
    LEFT JOIN check_job_items AS f ON f.job_pk = i.job_pk AND f.line = i.first_line
    LEFT JOIN tasks AS t ON t.id = {_ANSWERING_TASK}
"""

_ROWS_BY_STATUS = text(
    f"""
    SELECT t.result->>'phone_status' AS phone_status, count(*)
    {ROWS_FROM}
    WHERE i.job_pk = :job_pk AND t.state = '{TaskState.COMPLETED}'
    GROUP BY 1
    """
)

_WAITING_ITEMS = text(
    f"""
    SELECT count(*) FROM check_job_items WHERE job_pk = :job_pk AND state = '{JobItemState.WAITING}'
    """  # noqa: S608 - only enum values are interpolated
)

_SUBMITTED_SINCE = text(
    "SELECT count(*) FROM tasks WHERE job_pk = :job_pk AND registered_at > :since"
)

_ACTIVE_JOBS = text(
    f"""
    SELECT count(*) FROM check_jobs WHERE state IN ('{JobState.QUEUED}', '{JobState.RUNNING}')
    """  # noqa: S608 - only enum values are interpolated
)

_IN_FLIGHT = text(
    f"""
    SELECT EXISTS (SELECT 1 FROM scheduled_submits
                   WHERE job_pk = :job_pk AND state = '{ScheduledSubmitState.SUBMITTING}')
    """  # noqa: S608 - only enum values are interpolated
)


@dataclass(frozen=True, slots=True)
class JobProgress:
    """What moved since creation: its submitted items' tasks by state, its result rows by
    verdict (completed ones), and how many items still wait to be submitted."""

    tasks_by_state: dict[TaskState, int]
    rows_by_verdict: dict[str | None, int]
    waiting: int
    # Its items submitted in the last minute: the observed rate of the estimate.
    submitted_last_minute: int


async def find_job(session: AsyncSession, client_id: int, public_id: str) -> JobRow | None:
    row = (
        await session.execute(_FIND_JOB, {"client_id": client_id, "public_id": public_id})
    ).one_or_none()
    return None if row is None else job_row(row)


async def find_job_by_key(session: AsyncSession, client_id: int, key: str) -> JobRow | None:
    row = (
        await session.execute(_FIND_JOB_BY_KEY, {"client_id": client_id, "key": key})
    ).one_or_none()
    return None if row is None else job_row(row)


async def job_by_pk(session: AsyncSession, job_pk: int) -> JobRow | None:
    row = (await session.execute(_JOB_BY_PK, {"id": job_pk})).one_or_none()
    return None if row is None else job_row(row)


async def list_jobs(
    session: AsyncSession,
    client_id: int,
    *,
    state: JobState | None,
    before_id: int | None,
    limit: int,
) -> list[JobRow]:
    """The client's jobs, newest first, below row id `before_id`."""
    conditions = ["client_id = :client_id"]
    params: dict[str, Any] = {"client_id": client_id, "limit": limit}
    if state is not None:
        conditions.append("state = :state")
        params["state"] = state.value
    if before_id is not None:
        conditions.append("id < :before_id")
        params["before_id"] = before_id
    statement = text(
        f"SELECT {JOB_COLUMNS} FROM check_jobs WHERE {' AND '.join(conditions)} "  # noqa: S608 - constants only
        "ORDER BY id DESC LIMIT :limit"
    )
    return [job_row(row) for row in await session.execute(statement, params)]


async def write_status(
    session: AsyncSession, job: JobRow, status: JobStatus, now: datetime
) -> JobRow | None:
    """Write the job's new status, guarded by the status `job` was read with; None when it
    changed meanwhile. `started_at` is set on leaving the draft, `finished_at` on a final
    state."""
    row = (
        await session.execute(
            _WRITE_STATUS,
            {
                "id": job.id,
                "state": status.state.value,
                "paused_reason": status.paused_reason,
                "expected_state": job.state.value,
                "expected_reason": job.paused_reason,
                "now": now,
            },
        )
    ).one_or_none()
    return None if row is None else job_row(row)


async def hold_submits(session: AsyncSession, job_pk: int, now: datetime) -> None:
    """The job's waiting submits go on standby (a pause)."""
    await session.execute(_HOLD_SUBMITS, {"job_pk": job_pk, "now": now})


async def release_submits(session: AsyncSession, job_pk: int, now: datetime) -> None:
    """The job's submits on standby wait again, due now (a start or a resume)."""
    await session.execute(_RELEASE_SUBMITS, {"job_pk": job_pk, "now": now})


async def end_unsubmitted(session: AsyncSession, job_pk: int, now: datetime) -> None:
    """A cancel: items not yet submitted are `not_submitted`, their submits `done` and their
    numbers erased. One already being submitted goes on and is reported."""
    await session.execute(_END_UNSUBMITTED_SUBMITS, {"job_pk": job_pk, "now": now})
    await session.execute(_END_UNSUBMITTED_ITEMS, {"job_pk": job_pk})


_KEEP_FINAL_COUNTS = text(
    "UPDATE check_jobs SET final_counts = CAST(:counts AS jsonb) WHERE id = :id"
)


async def keep_final_counts(session: AsyncSession, job_pk: int, progress: dict[str, Any]) -> None:
    """Keep the finished job's progress, which can no longer change (`final_counts`)."""
    await session.execute(
        _KEEP_FINAL_COUNTS, {"id": job_pk, "counts": orjson.dumps(progress).decode()}
    )


async def job_progress(session: AsyncSession, job_pk: int, now: datetime) -> JobProgress:
    by_state = {
        TaskState(state): int(count)
        for state, count in await session.execute(_TASKS_BY_STATE, {"job_pk": job_pk})
    }
    by_verdict: dict[str | None, int] = {}
    for phone_status, count in await session.execute(_ROWS_BY_STATUS, {"job_pk": job_pk}):
        verdict = verdict_of(phone_status) if phone_status is not None else None
        key = None if verdict is None else verdict.value
        by_verdict[key] = by_verdict.get(key, 0) + int(count)
    waiting = int((await session.execute(_WAITING_ITEMS, {"job_pk": job_pk})).scalar_one())
    recent = (
        await session.execute(
            _SUBMITTED_SINCE, {"job_pk": job_pk, "since": now - timedelta(minutes=1)}
        )
    ).scalar_one()
    return JobProgress(by_state, by_verdict, waiting, int(recent))


async def count_active_jobs(session: AsyncSession) -> int:
    """Jobs that may submit now (queued or running), every client's: the estimate's share."""
    return int((await session.execute(_ACTIVE_JOBS)).scalar_one())


async def has_items_in_flight(session: AsyncSession, job_pk: int) -> bool:
    """Whether an item of the job is being submitted (its outcome is not known yet)."""
    return bool((await session.execute(_IN_FLIGHT, {"job_pk": job_pk})).scalar_one())


def job_row(row: Row[Any]) -> JobRow:
    return JobRow(
        id=int(row.id),
        public_id=str(row.public_id),
        client_id=int(row.client_id),
        name=row.name,
        state=JobState(row.state),
        paused_reason=None if row.paused_reason is None else PausedReason(row.paused_reason),
        max_age_s=int(row.max_age_s),
        recheck=row.recheck,
        idempotency_key=row.idempotency_key,
        fingerprint=None if row.fingerprint is None else bytes(row.fingerprint),
        items=int(row.items),
        rejected=int(row.rejected),
        duplicates=int(row.duplicates),
        cached=int(row.cached),
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        final_counts=row.final_counts,
    )


__all__ = ["JobProgress", "JobRow"]
