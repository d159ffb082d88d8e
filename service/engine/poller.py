"""The poll service: one message's batch of leased task ids, polled concurrently, written back in
one transaction.

For each task still leased to us: wait for its slot of the shared rate ceiling (`slots.py`), then
poll it (`task_poll.py`: the checks before the call, the call, the process's reaction to the
answer, the task's next state). Then one transaction writes every decision (lease-guarded) with
the events of final states, and hands back the leases of tasks that were not polled
(`poll_write_back.py`, with the estimate of `account_estimate.py` and the callback records of
`callback_trust.py`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.polling import PollPolicy, expire_decision
from service.engine.account_estimate import AccountEstimate
from service.engine.callback_trust import CallbackTrust
from service.engine.poll_write_back import (
    BatchReport,
    DeliveriesToSend,
    NotPolled,
    PollWriteBack,
)
from service.engine.slots import NoSlot, start_in_slots
from service.engine.task_poll import TaskPoll
from service.heartbeat import HeldLease, LeaseKeeper
from service.store.db import transaction
from service.store.leased_tasks import LeasedTask, load_leased_tasks
from service.store.leases import LeasedTable
from service.store.poll_results import PollWrite
from service.upstream.client import UpstreamClient
from service.upstream.reaction import UpstreamReaction

log = logging.getLogger(__name__)


_SECOND = timedelta(seconds=1)


class PollService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        upstream: UpstreamClient,
        reaction: UpstreamReaction,
        leases: LeaseKeeper,
        deliveries: DeliveriesToSend,
        *,
        clock: Clock = utc_now,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._sessions = sessions
        self._reaction = reaction
        self._leases = leases
        self._clock = clock
        self._batches: set[asyncio.Task[BatchReport]] = set()
        policy = PollPolicy(
            settings.poll_backoff,
            schedule=settings.schedule_policy,
            safety_net_first_s=settings.hinted_poll_initial_s,
            task_ttl_s=settings.task_ttl_s,
        )
        self._retry_after_error = _SECOND * policy.backoff.initial_s
        self._estimate = AccountEstimate(
            settings.upstream_account, settings.poll_estimate_half_life_s
        )
        self._task_poll = TaskPoll(
            upstream,
            reaction,
            policy,
            self._estimate,
            lease_margin=timedelta(
                seconds=min(settings.upstream_timeout_s + 1.0, settings.lease_s / 2)
            ),
            clock=clock,
            rand=rand,
        )
        trust = CallbackTrust(
            sessions,
            tolerance=settings.callback_loss_tolerance,
            first_poll_s=policy.backoff.initial_s,
        )
        self._write_back = PollWriteBack(sessions, self._estimate, trust, deliveries, clock)

    async def start_batch(
        self, ids: Sequence[int], lease_token: uuid.UUID, *, probe: bool = False
    ) -> int:
        """Start polling a claimed batch in the background and return at once (the worker's
        entry point): a batch waits most of its time for rate slots and upstream answers, and
        while it waits it must not hold one of the worker's few task slots, or batches behind it
        would queue in the broker while their leases, which nobody renews there, run out."""
        batch = asyncio.create_task(self._logged_batch(list(ids), lease_token, probe))
        self._batches.add(batch)
        batch.add_done_callback(self._batches.discard)
        return len(ids)

    async def _logged_batch(
        self, ids: list[int], lease_token: uuid.UUID, probe: bool
    ) -> BatchReport:
        try:
            return await self.poll_batch(ids, lease_token, probe=probe)
        except Exception:
            # Its leases run out and the tasks come due again: nothing is lost.
            log.exception("poll.batch_failed", extra={"tasks": len(ids)})
            return BatchReport()

    async def close(self) -> None:
        """Stop: batches still polling are abandoned; their leases bring them back."""
        for batch in list(self._batches):
            batch.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for every started batch to finish (tests, orderly shutdown)."""
        while self._batches:
            await asyncio.gather(*list(self._batches), return_exceptions=True)

    async def poll_batch(
        self, ids: Sequence[int], lease_token: uuid.UUID, *, probe: bool = False
    ) -> BatchReport:
        """Poll the tasks of one message and write the results back. `probe` marks the single
        call the scheduler sends while polling is paused."""
        report = BatchReport()
        now = self._clock()
        async with transaction(self._sessions) as session:
            leased = await load_leased_tasks(session, ids, lease_token, now)
            if leased:
                await self._estimate.refresh(session, now)
        # Not leased to us any more (a late or duplicated message, a cancel): nothing to do.
        report.skipped = len(ids) - len(leased)
        if not leased:
            return report
        held_ids = [task.id for task in leased]
        valid_until = min(task.lease_until for task in leased)
        with self._leases.hold(LeasedTable.TASKS, lease_token, held_ids, valid_until) as held:
            await self._poll_held(leased, lease_token, held, report, now, probe=probe)
        return report

    async def _poll_held(
        self,
        leased: list[LeasedTask],
        lease_token: uuid.UUID,
        held: HeldLease,
        report: BatchReport,
        now: datetime,
        *,
        probe: bool,
    ) -> None:
        writes: list[PollWrite] = []
        not_polled: list[NotPolled] = []
        to_call: list[LeasedTask] = []
        for task in leased:
            if task.expires_at <= now:
                writes.append(PollWrite(task.id, expire_decision(task.poll_count, now)))
            else:
                to_call.append(task)
        gate = await self._reaction.gate.state()
        if gate.paused and not probe:
            not_polled += [NotPolled(task.id) for task in to_call]
            to_call = []

        async def poll(task: LeasedTask) -> PollWrite | NotPolled:
            return await self._task_poll.poll(task, held, probe=probe)

        started, unstarted = await start_in_slots(
            self._reaction.limiter, self._reaction.gate, to_call, poll
        )
        not_polled += [NotPolled(task.id) for task in unstarted]
        results = await asyncio.gather(*started, return_exceptions=True)
        for task, item in zip(to_call, results, strict=False):
            if isinstance(item, NoSlot):
                # Nothing sent, and no slot for it (logged where the reservation failed).
                not_polled.append(NotPolled(task.id))
            elif isinstance(item, BaseException):
                if not isinstance(item, Exception):
                    raise item
                # A bug, not an answer: hand the task back rather than lose the whole batch, and
                # not at once, so a bug cannot turn into a loop of calls.
                log.error(
                    "poll.error",
                    extra={"task_id": task.task_id, "error_type": type(item).__name__},
                    exc_info=item,
                )
                retry_at = self._clock() + self._retry_after_error
                not_polled.append(NotPolled(task.id, not_before=retry_at))
            elif isinstance(item, PollWrite):
                writes.append(item)
                report.calls += 1
            else:
                not_polled.append(item)

        await self._write_back.write(lease_token, writes, not_polled, report)
