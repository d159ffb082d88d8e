"""A running job's counts as its client reads them: counted, then kept in Redis and shown again
while they are young enough (service/domain/job_count_age.py says how young, and why).

A kept count names the job's `updated_at` when it was made, which every change of the job's
status writes: a count made before a start, pause, resume or cancel is never shown after it.
Redis away or the kept count unreadable: the job is counted at this read, as it would be without
the cache (a warning at most once a minute per process). After a FLUSHALL the next read counts.

Only a client's reads keep counts (`GET /v1/check-jobs` and its list, the portal's pages). The
engine, a move's own answer and the `job.completed` event count at once: what they decide or
send must be the job as it is.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.job_count_age import MAX_AGE_S, shown_for_s
from service.domain.states import TaskState
from service.logs import OncePerInterval
from service.store import check_jobs as job_store
from service.store.check_jobs import JobProgress, JobRow

log = logging.getLogger(__name__)
log.addFilter(OncePerInterval(60.0))

KEY_PREFIX = "phonebridge:job_counts:"


class KeptCounts:
    """Counts of running jobs kept between their client's reads, in the deployment's Redis."""

    def __init__(self, redis: Redis[Any]) -> None:
        self._redis = redis

    async def progress(self, session: AsyncSession, job: JobRow, now: datetime) -> JobProgress:
        """The job's progress: the kept count while it is young enough and made since the job's
        status last changed, else counted now (and kept)."""
        key = f"{KEY_PREFIX}{job.id}"
        version = job.updated_at.isoformat()
        kept = await self._read(key)
        if kept is not None:
            progress = _young_enough(kept, version, now)
            if progress is not None:
                return progress
        started = time.perf_counter()
        progress = await job_store.job_progress(session, job.id, now)
        shown_for = shown_for_s(time.perf_counter() - started)
        await self._write(key, _encode(progress, version, now, shown_for))
        return progress

    async def _read(self, key: str) -> bytes | None:
        try:
            return await self._redis.get(key)
        except (RedisError, OSError) as error:
            _unavailable(error)
            return None

    async def _write(self, key: str, value: bytes) -> None:
        try:
            # Gone by itself once no count can be young enough (a finished job is never read
            # from here again: it shows the counts it kept when it finished).
            await self._redis.set(key, value, px=int(MAX_AGE_S * 1000))
        except (RedisError, OSError) as error:
            _unavailable(error)


def _unavailable(error: BaseException) -> None:
    log.warning(
        "job_counts.redis_unavailable",
        extra={"error_type": type(error).__name__, "detail": "counting jobs at each read"},
    )


def _encode(progress: JobProgress, version: str, now: datetime, shown_for_s: float) -> bytes:
    return orjson.dumps(
        {
            "version": version,
            "until": now.timestamp() + shown_for_s,
            "tasks_by_state": {state.value: n for state, n in progress.tasks_by_state.items()},
            "rows_by_verdict": list(progress.rows_by_verdict.items()),
            "waiting": progress.waiting,
            "submitted_last_minute": progress.submitted_last_minute,
        }
    )


def _young_enough(kept: bytes, version: str, now: datetime) -> JobProgress | None:
    """The kept progress, when it was counted at this status of the job and is still young
    enough at `now`; None otherwise (or unreadable: it is counted again)."""
    try:
        data = orjson.loads(kept)
        if data["version"] != version or now.timestamp() >= float(data["until"]):
            return None
        return JobProgress(
            tasks_by_state={TaskState(s): int(n) for s, n in data["tasks_by_state"].items()},
            rows_by_verdict={
                (None if verdict is None else str(verdict)): int(n)
                for verdict, n in data["rows_by_verdict"]
            },
            waiting=int(data["waiting"]),
            submitted_last_minute=int(data["submitted_last_minute"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
