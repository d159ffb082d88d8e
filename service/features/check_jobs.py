"""Check jobs: read, list, the client's moves (start, pause, resume, cancel), rejections, results
(JSON pages, streamed CSV and NDJSON), and the system's moves that the engine makes (upstream
pause and resume, completion with its one `job.completed` event).

Every surface calls these: the REST routes (service/api/check_jobs.py) and the portal. A job is
created by `service.features.check_job_creation`. The rules are the domain's: the counts
(`job_plan`), every move (`job_lifecycle.move_job`, written guarded by the status it was read
with), the estimate (`job_estimate`) and the result forms (`job_results`).

A job's JSON is built in one place, `job_json`: the API's answers and the `job.completed`
event's data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.domain.job_estimate import available_item_rate, estimated_finish_at
from service.domain.job_lifecycle import (
    JobMove,
    JobStatus,
    MoveRefused,
    completed_event_due,
    move_job,
)
from service.domain.job_plan import JobCounts, counts_fixed_once_finished, counts_with_progress
from service.domain.job_results import ResultRow, results_csv, results_ndjson
from service.domain.jsontext import json_bytes
from service.domain.states import JobState
from service.features.errors import MoveNotPossible
from service.features.ids import no_such_job, require_job_id
from service.features.job_counts import KeptCounts
from service.features.paging import Page, fetch_page
from service.store import check_job_results as result_store
from service.store import check_jobs as job_store
from service.store.check_job_results import RejectionRow
from service.store.check_jobs import JobRow
from service.store.db import transaction
from service.store.outbox import record_job_completed

__all__ = ["JobRow", "RejectionRow", "ResultRow"]

# What an item typically takes from its submit to its final answer, for the estimate (a check
# with upstream's callback answers in well under this; a poll-only one in about this).
ANSWER_TIME_S = 30.0
# Upstream calls an item costs: its submit and its polls (2.2 measured with callbacks).
CALLS_PER_ITEM = 2.2
# Result rows read from the server-side cursor per fetch while streaming (and per chunk sent).
ROWS_PER_FETCH = 1000


@dataclass(frozen=True, slots=True)
class JobPace:
    """What the estimate knows of the ceiling (PHONEBRIDGE_UPSTREAM_MAX_RPS)."""

    ceiling_per_s: float

    @classmethod
    def of(cls, settings: Settings) -> JobPace:
        """The deployment's pace: what every surface's estimate uses."""
        return cls(ceiling_per_s=settings.upstream_max_rps)


@dataclass(frozen=True, slots=True)
class JobView:
    """A job with its counts and estimate: what `job_json` shows."""

    job: JobRow
    counts: JobCounts
    estimated_finish_at: datetime | None


def job_json(view: JobView) -> dict[str, Any]:
    """The job as the contract shows it: every answer of the API and its `job.completed`
    event."""
    job = view.job
    return {
        "id": job.public_id,
        "name": job.name,
        "state": job.state,
        "paused_reason": job.paused_reason,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "max_age_s": job.max_age_s,
        "counts": view.counts.as_json(),
        "estimated_finish_at": view.estimated_finish_at,
    }


async def find_job(
    session: AsyncSession,
    client_id: int,
    job_id: str,
    pace: JobPace,
    now: datetime,
    *,
    kept: KeptCounts | None = None,
) -> JobView:
    """The client's job with its counts (a running job's from `kept` while they are young
    enough); NotFound when it has none by that id."""
    return await job_view(session, await _job(session, client_id, job_id), pace, now, kept=kept)


async def list_jobs(
    session: AsyncSession,
    client_id: int,
    *,
    state: JobState | None,
    before_id: int | None,
    size: int,
    pace: JobPace,
    now: datetime,
    kept: KeptCounts | None = None,
) -> Page[JobView]:
    """The client's jobs, newest first, below row id `before_id` (running jobs' counts from
    `kept` while they are young enough)."""
    page = await fetch_page(
        lambda limit: job_store.list_jobs(
            session, client_id, state=state, before_id=before_id, limit=limit
        ),
        size,
    )
    views = [await job_view(session, job, pace, now, kept=kept) for job in page.items]
    return Page(views, page.more)


async def move_job_by_client(
    session: AsyncSession,
    client_id: int,
    job_id: str,
    move: JobMove,
    pace: JobPace,
    now: datetime,
) -> JobView:
    """Start, pause, resume or cancel the client's job; MoveNotPossible (409) with the reason
    when its state does not allow it."""
    assert move.by_client
    job = await _job(session, client_id, job_id)
    while True:
        moved = move_job(job.status, move)
        if isinstance(moved, MoveRefused):
            raise MoveNotPossible(f"cannot {move.value} the job: {moved.reason}")
        written = await _write_move(session, job, moved, now)
        if written is not None:
            break
        # Moved by someone else since it was read: decide again on what it is now.
        job = await _job(session, client_id, job_id)
    view = await job_view(session, written, pace, now)
    if move is JobMove.CANCEL:
        await _emit_completed_if_due(session, view, now)
    return view


async def system_move(
    session: AsyncSession, job: JobRow, move: JobMove, now: datetime
) -> JobRow | None:
    """The engine's move of a job (begin, upstream pause and resume, all final), with its
    submits; None when it changed nothing (the move does not apply, or the job moved
    meanwhile: the engine looks again at its next step)."""
    assert not move.by_client
    moved = move_job(job.status, move)
    assert not isinstance(moved, MoveRefused)
    if moved == job.status:
        return None
    return await _write_move(session, job, moved, now)


async def emit_completed_if_due(
    session: AsyncSession, job: JobRow, pace: JobPace, now: datetime
) -> bool:
    """Write the job's one `job.completed` event when it is due (completed, or cancelled with
    nothing pending); True when this call wrote it."""
    return await _emit_completed_if_due(session, await job_view(session, job, pace, now), now)


async def rejections(
    session: AsyncSession, client_id: int, job_id: str, *, after_line: int, size: int
) -> Page[RejectionRow]:
    """The job's rejected items by line."""
    job = await _job(session, client_id, job_id)
    return await fetch_page(
        lambda limit: result_store.rejection_page(
            session, job.id, after_line=after_line, limit=limit
        ),
        size,
    )


async def results(
    session: AsyncSession, client_id: int, job_id: str, *, after_line: int, size: int
) -> Page[ResultRow]:
    """One page of the job's result rows, in input order."""
    job = await _job(session, client_id, job_id)
    return await fetch_page(
        lambda limit: result_store.result_page(session, job.id, after_line=after_line, limit=limit),
        size,
    )


class ResultForm(StrEnum):
    CSV = "csv"
    NDJSON = "ndjson"


async def results_job(session: AsyncSession, client_id: int, job_id: str) -> JobRow:
    """The job whose results are about to be streamed (NotFound before anything is sent)."""
    return await _job(session, client_id, job_id)


async def stream_results(
    sessions: async_sessionmaker[AsyncSession], job: JobRow, form: ResultForm
) -> AsyncIterator[bytes]:
    """Every result row of the job in `form`, in chunks, read from a server-side cursor in its
    own transaction: constant memory whatever the job's size."""
    async with transaction(sessions) as session:
        batches = result_store.stream_results(session, job.id, rows_per_fetch=ROWS_PER_FETCH)
        header_sent = False
        async for batch in batches:
            if form is ResultForm.NDJSON:
                for chunk in results_ndjson(batch, rows_per_chunk=len(batch)):
                    yield chunk
                continue
            chunks = results_csv(batch, rows_per_chunk=len(batch))
            header = next(chunks)
            if not header_sent:
                header_sent = True
                yield header
            for chunk in chunks:
                yield chunk
        if form is ResultForm.CSV and not header_sent:
            yield next(results_csv([]))


async def job_view(
    session: AsyncSession,
    job: JobRow,
    pace: JobPace,
    now: datetime,
    *,
    kept: KeptCounts | None = None,
) -> JobView:
    """The job with its counts from its items' tasks, and its estimate. A finished job whose
    counts can no longer change shows those it kept (`keep_final_counts`), and no estimate (a
    final job has none): counting its items again costs a read in proportion to its size (about
    60 ms at 20,000 items, 230 ms at 100,000: bench/jobs.py part v), and a page of
    `GET /v1/check-jobs` pays it for every job. A client's read of a running one passes `kept`:
    its counts are counted again only once the last count is old enough
    (service/features/job_counts.py); the engine's reads and a move's answer count at once."""
    if job.final_counts is not None:
        return JobView(job, job.planned.with_progress(job.final_counts), None)
    if kept is None:
        progress = await job_store.job_progress(session, job.id, now)
    else:
        progress = await kept.progress(session, job, now)
    counts = counts_with_progress(job.planned, progress.tasks_by_state, progress.rows_by_verdict)
    estimate = estimated_finish_at(
        now=now,
        status=job.status,
        left_to_submit=progress.waiting,
        pending=counts.pending,
        observed_item_rate=progress.submitted_last_minute / 60.0 or None,
        available_item_rate=available_item_rate(
            ceiling_per_s=pace.ceiling_per_s,
            interactive_per_s=0.0,
            active_jobs=await job_store.count_active_jobs(session),
            calls_per_item=CALLS_PER_ITEM,
        ),
        answer_time_s=ANSWER_TIME_S,
    )
    return JobView(job, counts, estimate)


async def _job(session: AsyncSession, client_id: int, job_id: str) -> JobRow:
    job = await job_store.find_job(session, client_id, require_job_id(job_id))
    if job is None:
        raise no_such_job(job_id)
    return job


async def _write_move(
    session: AsyncSession, job: JobRow, moved: JobStatus, now: datetime
) -> JobRow | None:
    """The new status, guarded by the one read, and what it means for the job's submits."""
    written = await job_store.write_status(session, job, moved, now)
    if written is None:
        return None
    if moved.state is JobState.CANCELLED:
        await job_store.end_unsubmitted(session, job.id, now)
    elif moved.state is JobState.PAUSED:
        await job_store.hold_submits(session, job.id, now)
    elif moved.state in (JobState.QUEUED, JobState.RUNNING) and job.state in (
        JobState.DRAFT,
        JobState.PAUSED,
    ):
        await job_store.release_submits(session, job.id, now)
    return written


async def _emit_completed_if_due(session: AsyncSession, view: JobView, now: datetime) -> bool:
    job = view.job
    if not completed_event_due(job.status, pending=view.counts.pending):
        return False
    if job.state is JobState.CANCELLED and await job_store.has_items_in_flight(session, job.id):
        return False
    recorded = await record_job_completed(
        session,
        client_id=job.client_id,
        job_pk=job.id,
        data=json_bytes(job_json(view), utc_z=True).decode(),
        now=now,
    )
    if recorded and counts_fixed_once_finished(job.planned, rechecked=job.recheck is not None):
        await job_store.keep_final_counts(session, job.id, view.counts.progress_json())
    return recorded
