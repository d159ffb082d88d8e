"""A check job's creation as stored, all in the caller's transaction (service/features/
check_job_creation.py): the job row, unless the client's Idempotency-Key already names one; its
items and rejections; and one scheduled submit (purpose `job_item`, its number sealed) per item
to submit. A job is there whole or not at all.

Creation scales: items, rejections and the items' scheduled submits are written with COPY, row
tuples streamed from the caller's columns: no ORM object and no statement per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.job_lifecycle import JobStatus
from service.domain.job_plan import JobCounts
from service.domain.states import (
    JobItemState,
    JobState,
    ScheduledSubmitPurpose,
    ScheduledSubmitState,
)
from service.store.check_jobs import JOB_COLUMNS, JobRow, job_row
from service.store.db import driver_connection


@dataclass(frozen=True, slots=True)
class NewJob:
    public_id: str
    client_id: int
    name: str | None
    status: JobStatus
    max_age_s: int
    recheck_json: str | None
    idempotency_key: str | None
    fingerprint: bytes | None
    counts: JobCounts
    now: datetime


@dataclass(slots=True)
class ItemColumns:
    """A job's accepted items, column by column (what `unnest` takes)."""

    lines: list[int] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    references: list[str | None] = field(default_factory=list)
    metadata: list[str | None] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    first_lines: list[int | None] = field(default_factory=list)
    task_pks: list[int | None] = field(default_factory=list)

    def add(
        self,
        line: int,
        state: JobItemState,
        reference: str | None,
        metadata_json: str | None,
        masked: str,
        digest: bytes,
        first_line: int | None,
        task_pk: int | None,
    ) -> None:
        self.lines.append(line)
        self.states.append(state.value)
        self.references.append(reference)
        self.metadata.append(metadata_json)
        self.masks.append(masked)
        self.digests.append(digest)
        self.first_lines.append(first_line)
        self.task_pks.append(task_pk)


@dataclass(slots=True)
class RejectionColumns:
    lines: list[int] = field(default_factory=list)
    references: list[str | None] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SubmitColumns:
    """The sealed numbers of the items to submit, by line."""

    lines: list[int] = field(default_factory=list)
    sealed: list[bytes] = field(default_factory=list)


_INSERT_JOB = text(
    f"""
    INSERT INTO check_jobs (public_id, client_id, name, state, paused_reason, max_age_s, recheck,
                            idempotency_key, fingerprint, items, rejected, duplicates, cached,
                            created_at, updated_at, started_at)
    VALUES (:public_id, :client_id, :name, CAST(:state AS text), CAST(:paused_reason AS text),
            :max_age_s, CAST(:recheck AS jsonb), :key, :fingerprint, :items, :rejected,
            :duplicates, :cached, :now, :now,
            CASE WHEN CAST(:state AS text) <> '{JobState.DRAFT}'
                 THEN CAST(:now AS timestamptz) END)
    ON CONFLICT (client_id, idempotency_key) DO NOTHING
    RETURNING {JOB_COLUMNS}
    """  # noqa: S608 - only constants are interpolated
)

# COPY, not INSERT: measured on this machine, 20,000 items took ~1.3 s as `INSERT ... SELECT FROM
# unnest(arrays)` (psycopg adapting each array element in Python) and a fraction of that as
# COPY rows (its binary implementation writes them in C).
_COPY_ITEMS = (
    "COPY check_job_items (job_pk, line, state, reference, metadata, phone_number_masked, "
    "number_digest, first_line, task_pk) FROM STDIN"
)
_COPY_REJECTIONS = "COPY check_job_rejections (job_pk, line, reference, detail) FROM STDIN"
_COPY_SUBMITS = (
    "COPY scheduled_submits (client_id, purpose, state, phone_number_sealed, due_at, created_at, "
    "updated_at, job_pk, job_line) FROM STDIN"
)


async def insert_job(session: AsyncSession, job: NewJob) -> JobRow | None:
    """Insert the job row; None when this client's Idempotency-Key already names a job."""
    counts = job.counts
    row = (
        await session.execute(
            _INSERT_JOB,
            {
                "public_id": job.public_id,
                "client_id": job.client_id,
                "name": job.name,
                "state": job.status.state.value,
                "paused_reason": job.status.paused_reason,
                "max_age_s": job.max_age_s,
                "recheck": job.recheck_json,
                "key": job.idempotency_key,
                "fingerprint": job.fingerprint,
                "items": counts.items,
                "rejected": counts.rejected,
                "duplicates": counts.duplicates,
                "cached": counts.cached,
                "now": job.now,
            },
        )
    ).one_or_none()
    return None if row is None else job_row(row)


async def insert_items(session: AsyncSession, job_pk: int, items: ItemColumns) -> None:
    await _copy(
        session,
        _COPY_ITEMS,
        zip(
            repeat(job_pk),
            items.lines,
            items.states,
            items.references,
            items.metadata,
            items.masks,
            items.digests,
            items.first_lines,
            items.task_pks,
            strict=False,
        ),
    )


async def insert_rejections(
    session: AsyncSession, job_pk: int, rejections: RejectionColumns
) -> None:
    await _copy(
        session,
        _COPY_REJECTIONS,
        zip(
            repeat(job_pk),
            rejections.lines,
            rejections.references,
            rejections.details,
            strict=False,
        ),
    )


async def insert_item_submits(
    session: AsyncSession,
    job: JobRow,
    submits: SubmitColumns,
    *,
    state: ScheduledSubmitState,
    now: datetime,
) -> None:
    """One scheduled submit per item to submit: `standby` (a draft), or `waiting` due now."""
    due_at = now if state is ScheduledSubmitState.WAITING else None
    purpose = ScheduledSubmitPurpose.JOB_ITEM.value
    await _copy(
        session,
        _COPY_SUBMITS,
        (
            (job.client_id, purpose, state.value, sealed, due_at, now, now, job.id, line)
            for line, sealed in zip(submits.lines, submits.sealed, strict=True)
        ),
    )


async def _copy(session: AsyncSession, statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY the rows in the session's own transaction (its driver connection)."""
    driver = await driver_connection(session)
    async with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


# A job of this many items or more is a large share of check_job_items (its first job, or a book
# of numbers on a young table): the statistics the planner has were made without it, and each
# pooled connection keeps the generic plan it made of the job view's counts (`job_progress`)
# until the table is analyzed again. Such a plan, made on a near-empty table, compared every item
# with every other: the progress of a 20,000-item job took seconds of a PostgreSQL core per read
# (`bench/jobs.py` part a: the job's GET timed out at 60 s) where the plan made on fresh
# statistics takes 37 ms.
ANALYZE_FROM_ITEMS = 1_000


async def refresh_item_statistics(session: AsyncSession, items: int) -> None:
    """Analyze check_job_items in the creating transaction when a job of `items` makes its
    statistics stale (ANALYZE counts the transaction's own rows; the plans cached on other
    connections are remade once it commits). A small job leaves it to autovacuum."""
    if items >= ANALYZE_FROM_ITEMS:
        await session.execute(text("ANALYZE check_job_items"))
