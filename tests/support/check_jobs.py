"""Check jobs written straight into the store, as the job engine would leave them: a job row, its
items and one scheduled submit per item (purpose `job_item`, its number sealed), `waiting` while
the job may submit and `standby` otherwise. For the tests of what moves jobs from outside the job
engine (the daily check budget)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.public_ids import new_public_id
from service.domain.states import (
    JobItemState,
    JobState,
    PausedReason,
    ScheduledSubmitPurpose,
    ScheduledSubmitState,
)
from service.sealed_numbers import NumberSeal
from service.store.db import transaction

# The name of every job made here, so that a test can remove them (and their submits) after it.
JOB_NAME = "inserted by tests/support/check_jobs.py"
# Numbers of the items: Mexico City numbers, one per line.
FIRST_NUMBER = 525512300000
# A seal of the tests' own: nothing here ever opens what it sealed.
_SEAL = NumberSeal(os.urandom(32))


@dataclass(frozen=True)
class InsertedJob:
    id: int
    public_id: str
    client_id: int


async def insert_check_job(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    now: datetime,
    *,
    items: int = 3,
    state: JobState = JobState.RUNNING,
    paused_reason: PausedReason | None = None,
) -> InsertedJob:
    """A started job of `items` items, none submitted yet, in `state`; its submits are waiting
    (due now) when the job may submit, else on standby."""
    public_id = new_public_id("job")
    may_submit = state in (JobState.QUEUED, JobState.RUNNING)
    submit_state = ScheduledSubmitState.WAITING if may_submit else ScheduledSubmitState.STANDBY
    async with transaction(sessions) as session:
        job_pk = (
            await session.execute(
                text(
                    """
                    INSERT INTO check_jobs (public_id, client_id, name, state, paused_reason,
                                            items, rejected, duplicates, cached, created_at,
                                            updated_at, started_at)
                    VALUES (:public_id, :client_id, :name, :state, :reason, :items, 0, 0,
                            0, :now, :now, :now)
                    RETURNING id
                    """
                ),
                {
                    "public_id": public_id,
                    "client_id": client_id,
                    "name": JOB_NAME,
                    "state": state.value,
                    "reason": None if paused_reason is None else paused_reason.value,
                    "items": items,
                    "now": now,
                },
            )
        ).scalar_one()
        for line in range(1, items + 1):
            number = str(FIRST_NUMBER + line)
            await session.execute(
                text(
                    f"""
                    INSERT INTO check_job_items (job_pk, line, state, phone_number_masked,
                                                 number_digest)
                    VALUES (:job_pk, :line, '{JobItemState.WAITING}', :masked, :digest)
                    """  # noqa: S608 - only enum values are interpolated
                ),
                {
                    "job_pk": job_pk,
                    "line": line,
                    "masked": f"52******{number[-4:]}",
                    "digest": hashlib.sha256(number.encode()).digest(),
                },
            )
            await session.execute(
                text(
                    f"""
                    INSERT INTO scheduled_submits (client_id, purpose, state, phone_number_sealed,
                                                   due_at, created_at, updated_at, job_pk,
                                                   job_line)
                    VALUES (:client_id, '{ScheduledSubmitPurpose.JOB_ITEM}', :state, :sealed,
                            :due_at, :now, :now, :job_pk, :line)
                    """  # noqa: S608 - only enum values are interpolated
                ),
                {
                    "client_id": client_id,
                    "state": submit_state.value,
                    "sealed": _SEAL.seal(number, f"test-job:{public_id}:{line}"),
                    "due_at": now if may_submit else None,
                    "now": now,
                    "job_pk": job_pk,
                    "line": line,
                },
            )
    return InsertedJob(int(job_pk), public_id, client_id)


async def job_row(sessions: async_sessionmaker[AsyncSession], job_pk: int) -> dict[str, Any]:
    """A job's row, straight from the store."""
    async with transaction(sessions) as session:
        row = (
            await session.execute(text("SELECT * FROM check_jobs WHERE id = :id"), {"id": job_pk})
        ).one()
    return dict(row._mapping)


async def job_submits(
    sessions: async_sessionmaker[AsyncSession], job_pk: int
) -> list[dict[str, Any]]:
    """A job's scheduled submits, by line."""
    async with transaction(sessions) as session:
        rows = await session.execute(
            text("SELECT * FROM scheduled_submits WHERE job_pk = :id ORDER BY job_line"),
            {"id": job_pk},
        )
        return [dict(row._mapping) for row in rows]


async def delete_inserted_jobs(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Remove the jobs made here, with their items and submits (no later claim finds them)."""
    async with transaction(sessions) as session:
        await session.execute(text("DELETE FROM check_jobs WHERE name = :n"), {"n": JOB_NAME})
