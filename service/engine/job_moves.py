"""The system's moves of check jobs, a scheduler step: what no client asks for but the contract
promises (service/domain/job_lifecycle.py decides each move; the feature writes it with its
submits, service/features/check_jobs.py).

Each run (every half second, or PHONEBRIDGE_SCHEDULER_TICK_S when that is longer):
- upstream's account pause (the global pause, service/upstream/pause.py) pauses every queued or
  running job (`paused_reason` upstream; their waiting submits on standby), and when it lifts
  they run again by themselves;
- a started job every item of which has its final answer is completed;
- a completed job, or a cancelled one whose submitted items all have their final answers, gets
  its one `job.completed` event (events.job_pk is unique per type: a second run writes nothing).

(Queued -> running, `begin`, is made where a job's first item is marked submitting:
service/engine/job_items.py.)
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.job_lifecycle import JobMove
from service.domain.states import JobState, PausedReason
from service.features import check_jobs as job_feature
from service.features.check_jobs import JobPace
from service.store import job_moves as move_store
from service.store.db import transaction
from service.upstream.pause import read_pause

log = logging.getLogger(__name__)

# Jobs moved per query and run; more wait for the next run.
JOBS_PER_RUN = 100


class JobSystemMoves:
    name = "job_system_moves"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis[Any],
        pace: JobPace,
        interval_s: float,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._pace = pace
        self.interval_s = interval_s

    async def run(self, now: datetime) -> None:
        paused = await read_pause(self._redis) is not None
        async with transaction(self._sessions) as session:
            if paused:
                jobs = await move_store.jobs_in_states(
                    session, (JobState.QUEUED, JobState.RUNNING), limit=JOBS_PER_RUN
                )
                move = JobMove.UPSTREAM_PAUSED
            else:
                jobs = await move_store.jobs_in_states(
                    session,
                    (JobState.PAUSED,),
                    paused_reason=PausedReason.UPSTREAM,
                    limit=JOBS_PER_RUN,
                )
                move = JobMove.UPSTREAM_RESUMED
            for job in jobs:
                if await job_feature.system_move(session, job, move, now) is not None:
                    log.info("job.moved", extra={"job_id": job.public_id, "move": move.value})
        async with transaction(self._sessions) as session:
            for job in await move_store.jobs_all_final(session, JOBS_PER_RUN):
                completed = await job_feature.system_move(session, job, JobMove.ALL_FINAL, now)
                if completed is not None:
                    await job_feature.emit_completed_if_due(session, completed, self._pace, now)
                    log.info("job.completed", extra={"job_id": job.public_id})
        async with transaction(self._sessions) as session:
            for job in await move_store.cancelled_jobs_unreported(session, JOBS_PER_RUN):
                await job_feature.emit_completed_if_due(session, job, self._pace, now)
