"""The scheduler: a loop of independent periodic steps that find due work in Postgres.

Each tick (PHONEBRIDGE_SCHEDULER_TICK_S) runs every step whose interval has passed; a step that
fails is logged and retried next time without stopping the others. Steps take the time as a
parameter. Any number of schedulers may run at once: claims use FOR UPDATE SKIP LOCKED and leases,
budgets and the probe turn live in Redis.

To add a step (the webhook delivery sweep, say), give it a `name`, an `interval_s` and an async
`run(now)`, and add it in `default_steps`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock
from service.config import Settings
from service.domain.claims_ahead import submit_claim_room
from service.domain.states import TaskState
from service.engine.budgets import BudgetResume
from service.engine.job_moves import JobSystemMoves
from service.engine.retention import RetentionPurge
from service.engine.table_statistics import TableStatisticsRefresh
from service.features.check_jobs import JobPace
from service.observability.metrics import (
    POLL_CLAIMS,
    SCHEDULER_STEP_FAILURES,
    record_task_finished,
)
from service.observability.snapshot import StoreSnapshotRefresh
from service.store.db import transaction
from service.store.deadline_sweep import expire_overdue_tasks
from service.store.job_items import end_lost_items
from service.store.leases import MAX_BATCHES_PER_TICK
from service.store.poll_claims import claim_due_tasks
from service.store.rechecks import end_lost_rechecks
from service.store.scheduled_submits import claim_due_submits, count_claimed_unsent
from service.upstream.pause import read_pause
from service.upstream.probe import give_back_probe_turn, take_probe_turn
from service.upstream.ratelimit import UpstreamRateLimiter

log = logging.getLogger(__name__)


DEADLINE_SWEEP_INTERVAL_S = 1.0
# The system's moves of check jobs (pause, resume, completion) need no finer step than this.
JOB_MOVES_INTERVAL_S = 0.5
DEADLINE_SWEEP_BATCH = 500
DEADLINE_SWEEP_MAX_ROUNDS = 20


class PeriodicStep(Protocol):
    name: str
    interval_s: float

    async def run(self, now: datetime) -> None: ...


class PollPublisher(Protocol):
    """Sends one poll message (a batch of ids and their lease token) to the workers."""

    def __call__(self, ids: list[int], lease_token: uuid.UUID, probe: bool) -> None: ...


class SubmitPublisher(Protocol):
    """Sends one message of claimed scheduled submits (ids and their lease token) to the
    workers."""

    def __call__(self, ids: list[int], lease_token: uuid.UUID) -> None: ...


@dataclass(frozen=True)
class SchedulerContext:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis[Any]
    limiter: UpstreamRateLimiter
    publish_poll: PollPublisher
    # Without it, scheduled submits (re-checks) are not sent by this scheduler.
    publish_submit: SubmitPublisher | None = None


class PollDispatch:
    """Claims due tasks (as many as the shared rate allows) and sends them in batches; while
    upstream is paused, claims one task per probe interval as the probe."""

    name = "poll_dispatch"

    def __init__(self, context: SchedulerContext) -> None:
        self._context = context
        settings = context.settings
        self.interval_s = settings.scheduler_tick_s
        self._batch_size = settings.poll_batch_size
        self._max_claims = settings.poll_batch_size * MAX_BATCHES_PER_TICK

    async def run(self, now: datetime) -> None:
        context = self._context
        if await read_pause(context.redis) is not None:
            await self._probe(now)
            return
        granted = await context.limiter.take_claims(self._max_claims)
        if granted == 0:
            return
        async with transaction(context.sessions) as session:
            token, ids = await claim_due_tasks(
                session,
                now,
                context.settings.lease_s,
                limit=granted,
                account=context.settings.upstream_account,
            )
        await context.limiter.return_claims(granted - len(ids))
        POLL_CLAIMS.inc(len(ids))
        for start in range(0, len(ids), self._batch_size):
            context.publish_poll(ids[start : start + self._batch_size], token, False)
        if ids:
            log.debug("poll.dispatched", extra={"tasks": len(ids), "lease_token": str(token)})

    async def _probe(self, now: datetime) -> None:
        context = self._context
        if not await take_probe_turn(context.redis, context.settings.pause_probe_s):
            return
        async with transaction(context.sessions) as session:
            token, ids = await claim_due_tasks(session, now, context.settings.lease_s, limit=1)
        if not ids:
            await give_back_probe_turn(context.redis)
            return
        context.publish_poll(ids, token, True)
        log.info("upstream.probe_sent", extra={"task_pk": ids[0]})


class SubmitDispatch:
    """Claims due scheduled submits (re-checks, check job items) as the shared rate allows and
    sends them in batches; after the polls of the same tick (a step of `default_steps` after
    PollDispatch), so a submit later does not delay a due poll, and as background work
    (`take_claims(background=True)`), so a single check keeps its slot; never further ahead of
    the workers than about a second of the ceiling (service/domain/claims_ahead.py), so that no
    claim's lease runs out in a worker's queue. Nothing is claimed while upstream is paused."""

    name = "submit_dispatch"

    def __init__(self, context: SchedulerContext, publish: SubmitPublisher) -> None:
        self._context = context
        self._publish = publish
        settings = context.settings
        self.interval_s = settings.scheduler_tick_s
        self._batch_size = settings.poll_batch_size
        self._max_claims = settings.poll_batch_size * MAX_BATCHES_PER_TICK

    async def run(self, now: datetime) -> None:
        context = self._context
        if await read_pause(context.redis) is not None:
            return
        settings = context.settings
        # No further ahead of the workers than they send soon (service/domain/claims_ahead.py).
        async with transaction(context.sessions) as session:
            claimed = await count_claimed_unsent(session, now)
        room = submit_claim_room(claimed, settings.upstream_max_rps, settings.lease_s)
        if room == 0:
            return
        # Background: what the tick's due polls and recent interactive submits leave.
        granted = await context.limiter.take_claims(min(room, self._max_claims), background=True)
        if granted == 0:
            return
        async with transaction(context.sessions) as session:
            token, ids = await claim_due_submits(session, now, settings.lease_s, limit=granted)
        await context.limiter.return_claims(granted - len(ids))
        for start in range(0, len(ids), self._batch_size):
            self._publish(ids[start : start + self._batch_size], token)
        if ids:
            log.info("recheck.dispatched", extra={"submits": len(ids), "lease_token": str(token)})


class DeadlineSweep:
    """Ends pending tasks whose deadline has passed (and that nobody holds a live lease on), with
    their events, in small batches; and the re-checks and check job items whose worker died
    while submitting (their outcome unknown, never submitted again)."""

    name = "deadline_sweep"

    def __init__(
        self, context: SchedulerContext, interval_s: float = DEADLINE_SWEEP_INTERVAL_S
    ) -> None:
        self._context = context
        self.interval_s = interval_s

    async def run(self, now: datetime) -> None:
        for _ in range(DEADLINE_SWEEP_MAX_ROUNDS):
            async with transaction(self._context.sessions) as session:
                lost = await end_lost_rechecks(session, now, DEADLINE_SWEEP_BATCH)
            for task in lost:
                log.warning("recheck.outcome_unknown", extra={"task_id": task.task_id})
            if len(lost) < DEADLINE_SWEEP_BATCH:
                break
        for _ in range(DEADLINE_SWEEP_MAX_ROUNDS):
            async with transaction(self._context.sessions) as session:
                lost_items = await end_lost_items(session, now, DEADLINE_SWEEP_BATCH)
            for job_pk, line in lost_items:
                log.warning("job_item.outcome_unknown", extra={"job_pk": job_pk, "line": line})
            if len(lost_items) < DEADLINE_SWEEP_BATCH:
                break
        for _ in range(DEADLINE_SWEEP_MAX_ROUNDS):
            async with transaction(self._context.sessions) as session:
                ended = await expire_overdue_tasks(session, now, DEADLINE_SWEEP_BATCH)
            for task in ended:
                record_task_finished(task.state)
                # A task waiting for a re-check that could not be sent ends with its answer.
                event = "task.expired" if task.state is TaskState.EXPIRED else "task.recheck_unsent"
                log.info(event, extra={"task_id": task.task_id, "task_pk": task.id})
            if len(ended) < DEADLINE_SWEEP_BATCH:
                return


def default_steps(context: SchedulerContext) -> list[PeriodicStep]:
    """The engine's steps: polls, scheduled submits (given their publisher), deadlines,
    retention and the store snapshot (the scheduler's process adds the webhook deliveries' step,
    service/runtime.py)."""
    settings = context.settings
    steps: list[PeriodicStep] = [PollDispatch(context)]
    if context.publish_submit is not None:
        steps.append(SubmitDispatch(context, context.publish_submit))
    steps += [
        JobSystemMoves(
            context.sessions,
            context.redis,
            JobPace.of(settings),
            max(settings.scheduler_tick_s, JOB_MOVES_INTERVAL_S),
        ),
        DeadlineSweep(context),
        BudgetResume(context.sessions, settings),
        RetentionPurge(context.sessions, settings.retention_days),
        TableStatisticsRefresh(context.sessions),
        StoreSnapshotRefresh(
            context.sessions,
            context.redis,
            settings.metrics_refresh_s,
            half_life_s=settings.poll_estimate_half_life_s,
        ),
    ]
    return steps


class Scheduler:
    def __init__(
        self,
        steps: Sequence[PeriodicStep],
        *,
        tick_s: float,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._steps = list(steps)
        self._tick_s = tick_s
        self._clock = clock
        self._monotonic = monotonic
        self._last_run: dict[str, float] = {}

    async def run_due_steps(self) -> None:
        """One tick: every step whose interval has passed runs once, each isolated."""
        for step in self._steps:
            started = self._monotonic()
            last = self._last_run.get(step.name)
            if last is not None and started - last < step.interval_s:
                continue
            self._last_run[step.name] = started
            try:
                await step.run(self._clock())
            except Exception:
                SCHEDULER_STEP_FAILURES.labels(step=step.name).inc()
                log.exception("scheduler.step_failed", extra={"step": step.name})

    async def run_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = self._monotonic()
            await self.run_due_steps()
            delay = self._tick_s - (self._monotonic() - started)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
