"""The poll service: one message's batch of leased task ids, polled concurrently, written back in
one transaction.

For each task still leased to us: wait for its slot of the shared rate ceiling, check that the
deadline and the lease still allow a call and that upstream is not paused or blocking us, call,
classify the answer (pure), react to it globally (pause, slow down, Retry-After), decide the task's
next state (pure). Then one transaction writes every decision (lease-guarded) with the events of
final states, and hands back the leases of tasks that were not polled.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.answers import Outcome, OutcomeKind, classify_answer
from service.domain.callbacks import HALF_LIFE_S as CALLBACK_HALF_LIFE_S
from service.domain.completion import CompletionEstimate, Observation, apportion
from service.domain.polling import (
    DecisionKind,
    PollDecision,
    PollPolicy,
    TaskSnapshot,
    decide_after_poll,
    expire_decision,
)
from service.domain.states import TaskSource, TaskState
from service.heartbeat import HeldLease, LeaseKeeper
from service.observability.metrics import record_callback_trust, record_poll
from service.store.callbacks import CallbackCount, TrustChange, count_callbacks, stop_waiting
from service.store.db import transaction
from service.store.estimates import ACCOUNT_WIDE, add_to_estimates, load_estimate
from service.store.leases import LeasedTable
from service.store.polling import (
    LeasedTask,
    PolledAnswer,
    PollWrite,
    WrittenTask,
    load_leased_tasks,
    record_poll_results_leasing_deliveries,
    release_leases,
)
from service.upstream.client import UpstreamClient
from service.upstream.ratelimit import MAX_LATENESS_S
from service.upstream.reaction import UpstreamReaction

log = logging.getLogger(__name__)


_SECOND = timedelta(seconds=1)


# Reservations in a row whose every slot came too late before a batch calls anyway: each costs
# unused slots, and a starved loop must still poll.
MAX_FRUITLESS_RESERVATIONS = 3


@dataclass(frozen=True)
class NotPolled:
    """A task handed back without a call; due again no earlier than `not_before`."""

    id: int
    not_before: datetime | None = None


class DeliveriesToSend(Protocol):
    """Sends at once the deliveries a write-back leased to this process (the worker's webhook
    deliveries, service/webhooks/service.py), so they need not wait for the scheduler's claim."""

    @property
    def lease_s(self) -> float: ...

    async def start_batch(self, ids: Sequence[int], lease_token: uuid.UUID) -> int: ...


@dataclass
class BatchReport:
    calls: int = 0
    written: int = 0
    released: int = 0
    skipped: int = 0
    decisions: dict[str, int] = field(default_factory=dict)


class PollService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        upstream: UpstreamClient,
        reaction: UpstreamReaction,
        *,
        clock: Clock = utc_now,
        rand: Callable[[], float] = random.random,
        leases: LeaseKeeper | None = None,
        deliveries: DeliveriesToSend | None = None,
    ) -> None:
        self._settings = settings
        # With it, the deliveries a write-back creates are leased to this process in the same
        # statement and sent at once; without it (tests), the scheduler claims them.
        self._deliveries = deliveries
        # Without a keeper of the worker's (tests), leases are held but nobody renews them.
        self._leases = leases or LeaseKeeper(sessions, settings.lease_s, clock=clock)
        self._batches: set[asyncio.Task[BatchReport]] = set()
        self._sessions = sessions
        self._upstream = upstream
        self._reaction = reaction
        self._limiter = reaction.limiter
        self._gate = reaction.gate
        self._clock = clock
        self._rand = rand
        self._policy = PollPolicy(
            settings.poll_backoff,
            schedule=settings.schedule_policy,
            safety_net_first_s=settings.hinted_poll_initial_s,
        )
        self._account = settings.upstream_account
        # The account's completion-time estimate, read with each batch (one row by key).
        self._estimate: CompletionEstimate | None = None
        # A call must not start when the lease could end before the answer arrives: the next
        # round could then poll the same task at the same time.
        self._lease_margin = timedelta(
            seconds=min(settings.upstream_timeout_s + 1.0, settings.lease_s / 2)
        )

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
            stored = await load_estimate(session, self._account) if leased else None
        if stored is not None:
            self._estimate = stored.as_of(now, self._settings.poll_estimate_half_life_s)
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
        gate = await self._gate.state()
        if gate.paused and not probe:
            not_polled += [NotPolled(task.id) for task in to_call]
            to_call = []

        started, unstarted = await self._start_calls_in_slots(to_call, held, probe=probe)
        not_polled += [NotPolled(task.id) for task in unstarted]
        results = await asyncio.gather(*started, return_exceptions=True)
        for task, item in zip(to_call, results, strict=False):
            if isinstance(item, BaseException):
                if not isinstance(item, Exception):
                    raise item
                # A bug, not an answer: hand the task back rather than lose the whole batch, and
                # not at once, so a bug cannot turn into a loop of calls.
                log.error(
                    "poll.error",
                    extra={"task_id": task.task_id, "error_type": type(item).__name__},
                    exc_info=item,
                )
                retry_at = self._clock() + _SECOND * self._policy.backoff.initial_s
                not_polled.append(NotPolled(task.id, not_before=retry_at))
            elif isinstance(item, PollWrite):
                writes.append(item)
                report.calls += 1
            else:
                not_polled.append(item)

        await self._write_back(lease_token, writes, not_polled, report)

    async def _start_calls_in_slots(
        self, tasks: list[LeasedTask], held: HeldLease, *, probe: bool
    ) -> tuple[list[asyncio.Task[PollWrite | NotPolled]], list[LeasedTask]]:
        """Start each task's poll at its slot of the shared rate ceiling.

        One loop walks the batch's slots in order. A slot's time is only known to within the
        reservation's round trip (Redis counted from when it ran the script): a call waits for
        the latest the slot can be, so it is never early, and is late when it starts more than
        MAX_LATENESS_S after the earliest. A late call could land beside the next slot's on-time
        call, so the rest of the batch takes fresh slots instead (one Redis call); so does the
        first slot of a reservation whose round trip alone was too slow (a starved event loop).
        After MAX_FRUITLESS_RESERVATIONS in a row that start nothing, the next call goes at its
        slot however late, so a starved loop still polls. (A poll is not handed back when the
        loop runs it late after this check: that costs a claim cycle of latency under load,
        which the hinted polls cannot afford.)
        Returns the started polls (in the order of `tasks`) and the tasks never started.
        """
        loop = asyncio.get_running_loop()
        started: list[asyncio.Task[PollWrite | NotPolled]] = []
        index = 0
        fruitless = 0
        while index < len(tasks):
            # A loop that stays starved still polls: after a few fruitless reservations the
            # next call goes at its slot however late (as it must, or nothing would be polled).
            strict = fruitless < MAX_FRUITLESS_RESERVATIONS
            if not strict:
                log.warning("poll.slots_late", extra={"tasks": len(tasks) - index})
            sent_at = loop.time()
            try:
                reservation = await self._limiter.reserve_calls(len(tasks) - index)
            except Exception as error:
                # Without a slot there is no call; the rest goes back to the schedule.
                log.error("poll.no_rate_slot", extra={"error_type": type(error).__name__})
                return started, tasks[index:]
            earliest = sent_at + reservation.first_in_s
            latest = loop.time() + reservation.first_in_s
            fruitless += 1
            for slot in range(reservation.count):
                offset = slot * reservation.interval_s
                # Refresh the pause and block from Redis (when stale) before waiting for the
                # slot, not between the slot and the call.
                await self._gate.state()
                delay = latest + offset - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if strict and loop.time() > earliest + offset + MAX_LATENESS_S:
                    break
                started.append(asyncio.create_task(self._poll_one(tasks[index], held, probe=probe)))
                index += 1
                fruitless = 0
        return started, []

    async def _poll_one(
        self, task: LeasedTask, held: HeldLease, *, probe: bool
    ) -> PollWrite | NotPolled:
        now = self._clock()
        if now >= task.expires_at:
            return PollWrite(task.id, expire_decision(task.poll_count, now))
        if now >= held.valid_until - self._lease_margin:
            return NotPolled(task.id)
        gate = self._gate.last_state()
        if gate.paused and not probe:
            return NotPolled(task.id)
        if gate.blocked_for_s > 0:
            return NotPolled(task.id, not_before=now + timedelta(seconds=gate.blocked_for_s))

        started = time.perf_counter()
        raw = await self._upstream.fetch_task_result(task.task_id)
        latency_s = time.perf_counter() - started
        answered_at = self._clock()
        outcome = classify_answer(raw, answered_at)
        late_s = None if task.next_poll_at is None else (now - task.next_poll_at).total_seconds()
        record_poll(outcome.kind.value, latency_s, late_s)
        await self._reaction.react(outcome, answered_at, probe=probe)
        decision = decide_after_poll(
            TaskSnapshot(
                task.poll_count,
                task.expires_at,
                submitted_at=task.submitted_at,
                last_pending_at=task.last_pending_at,
                calls_before=1 if task.source is TaskSource.SUBMITTED else 0,
                safety_net=task.expects_callback and task.callbacks_trusted,
            ),
            outcome,
            answered_at,
            self._policy,
            self._rand(),
            self._estimate,
        )
        _log_poll(task, outcome, decision)
        polled = PolledAnswer(
            answered_at, outcome.code, raw.status_code, outcome.request_id, round(latency_s * 1000)
        )
        return PollWrite(task.id, decision, polled)

    async def _trust_changed(self, change: TrustChange, now: datetime) -> None:
        """Log and count a client's callbacks becoming trusted or not; when not, its checks still
        waiting for a callback are made due (their record is committed: trust is already gone for
        whatever claims them)."""
        record = change.record
        record_callback_trust(record.trusted)
        waiting = 0
        if not record.trusted:
            async with transaction(self._sessions) as session:
                waiting = await stop_waiting(
                    session, change.client_id, now, first_poll_s=self._policy.backoff.initial_s
                )
        log.warning(
            "callbacks.trusted" if record.trusted else "callbacks.untrusted",
            extra={
                "client_id": change.client_id,
                "missed_share": round(record.missed_share, 3),
                "waiting_checks_made_due": waiting,
            },
        )

    async def _write_back(
        self,
        lease_token: uuid.UUID,
        writes: list[PollWrite],
        not_polled: list[NotPolled],
        report: BatchReport,
    ) -> None:
        now = self._clock()
        by_not_before: dict[datetime | None, list[int]] = defaultdict(list)
        for item in not_polled:
            by_not_before[item.not_before].append(item.id)
        deliveries_leased_until = None
        if self._deliveries is not None:
            # As long as a claimed delivery's lease.
            deliveries_leased_until = now + timedelta(seconds=self._deliveries.lease_s)
        async with transaction(self._sessions) as session:
            written, delivery_ids = await record_poll_results_leasing_deliveries(
                session, lease_token, writes, now, deliveries_leased_until
            )
            await add_to_estimates(
                session,
                self._account,
                completion_increments(self._estimate, writes, written),
                now,
                self._settings.poll_estimate_half_life_s,
            )
            trust_changes = await count_callbacks(
                session,
                callback_counts(written),
                now,
                half_life_s=CALLBACK_HALF_LIFE_S,
                tolerance=self._settings.callback_loss_tolerance,
            )
            for not_before, task_ids in by_not_before.items():
                report.released += await release_leases(
                    session, task_ids, lease_token, now, not_before=not_before
                )
        if delivery_ids and self._deliveries is not None:
            # Committed: they are ours under the batch's token until the lease ends.
            await self._deliveries.start_batch(delivery_ids, lease_token)
        for change in trust_changes:
            await self._trust_changed(change, now)
        report.written = len(written)
        for write in writes:
            kind = write.decision.kind.value
            report.decisions[kind] = report.decisions.get(kind, 0) + 1
        for task in written:
            if task.state == TaskState.EXPIRED:
                log.info("task.expired", extra={"task_id": task.task_id, "task_pk": task.id})
        if len(written) < len(writes):
            # Lost the lease in between (a cancel, or a lease that ran out and was re-claimed):
            # the guard kept those rows as they were.
            log.info("poll.write_back_skipped", extra={"tasks": len(writes) - len(written)})


def callback_counts(written: Sequence[WrittenTask]) -> dict[int, CallbackCount]:
    """Per client, the callback-carrying checks a write-back completed: with their callback
    (heard) or without (missed)."""
    heard: Counter[int] = Counter()
    missed: Counter[int] = Counter()
    for task in written:
        if task.expects_callback and task.state == TaskState.COMPLETED:
            (heard if task.hinted else missed)[task.client_id] += 1
    return {
        client_id: CallbackCount(heard[client_id], missed[client_id])
        for client_id in heard.keys() | missed.keys()
    }


def completion_increments(
    estimate: CompletionEstimate | None, writes: Sequence[PollWrite], written: Sequence[WrittenTask]
) -> dict[int, tuple[float, ...]]:
    """What a batch's recorded completions add to the account's estimate (key ACCOUNT_WIDE) and
    to each client's, spread by the estimate the batch was scheduled with."""
    observed: dict[int, Observation] = {
        write.id: write.decision.observation
        for write in writes
        if write.decision.observation is not None
    }
    by_client: dict[int, list[Observation]] = defaultdict(list)
    for task in written:
        if task.state == TaskState.COMPLETED and task.id in observed:
            by_client[task.client_id].append(observed[task.id])
    if not by_client:
        return {}
    spread_by = estimate or CompletionEstimate.empty()
    increments = {client: apportion(spread_by, seen) for client, seen in by_client.items()}
    account = [math.fsum(column) for column in zip(*increments.values(), strict=True)]
    return {ACCOUNT_WIDE: tuple(account), **increments}


def _log_poll(task: LeasedTask, outcome: Outcome, decision: PollDecision) -> None:
    extra: dict[str, Any] = {
        "task_id": task.task_id,
        "task_pk": task.id,
        "request_id": outcome.request_id,
        "code": outcome.code,
        "decision": decision.kind.value,
        "poll_count": decision.poll_count,
    }
    if outcome.unknown_phone_status and outcome.result is not None:
        log.warning(
            "poll.unknown_phone_status",
            extra=extra | {"phone_status": outcome.result.phone_status},
        )
    if decision.kind is DecisionKind.COMPLETE:
        log.info("poll.completed", extra=extra)
    elif decision.kind is DecisionKind.FAIL:
        log.info("poll.failed", extra=extra | {"detail": outcome.message})
    elif decision.kind is DecisionKind.EXPIRE:
        log.info("poll.expired", extra=extra)
    elif outcome.kind is OutcomeKind.PENDING:
        log.debug("poll.pending", extra=extra)
    else:
        log.info(
            "poll.retry",
            extra=extra | {"outcome": outcome.kind.value, "detail": outcome.message},
        )
