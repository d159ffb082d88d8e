"""Check job items, submitted: the second purpose of the scheduled-submit engine
(service/engine/scheduled_submits.py hands each claimed batch's job items here).

For each item still leased to us (service/store/job_items.py), in this order:

1-3. as for every purpose (service/engine/slot_sends.py): nothing is sent while upstream is paused
   or blocked (Retry-After): the item waits again (the scheduler's job step pauses the jobs
   themselves, `paused_reason` upstream); the item is marked `submitting` and committed, its check
   counted in the same transaction under a daily check budget (service/engine/budget_gate.py, as
   for re-checks: past the budget it is handed back unsent, due at the next UTC midnight, and its
   client's jobs are paused for the budget; an item handed back unsent after its mark gives its
   check back); the first item of a queued job moves it to running in that transaction; from
   here on, a death of this process makes the item's outcome unknown, and it is never sent again
   (items are marked a group at a time under the process's cap, so a dying worker leaves at most
   MOST_MARKED submits `unknown`, whatever the batches it holds); its slot of the shared rate
   ceiling is waited for (service/engine/slots.py), as a poll's; from its call on, the heartbeat
   renews its `submitting` lease (service/heartbeat.py) until the answer is written, so a live
   worker slowed down (a starved CPU) does not see it declared unknown under it;
4. upstream is called with the number, opened from its seal only now, and the client's callback
   URL when PHONEBRIDGE_PUBLIC_URL is set (as a single check);
5. the answer is written in one transaction (one statement, in autocommit, unless upstream
   answered at once or the number is kept for re-checks): a task (with its event when upstream
   answered at once), `refused` for INVALID_ARGUMENT, `unknown` when the call may have reached
   upstream without an answer; handed back, unsent, when it surely did not.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.answers import classify_answer
from service.domain.backoff import next_poll_delay
from service.domain.checks import INSTANT_TASK_PREFIX, SubmitKind, SubmitOutcome, classify_submit
from service.domain.job_lifecycle import JobMove
from service.domain.rechecks import recheck_due_at, waiting_deadline
from service.domain.states import JobItemState, TaskState
from service.domain.verdicts import verdict_of
from service.engine.slot_sends import (
    HANDED_BACK,
    MARKED_AT_ONCE,
    SKIPPED,
    MarkedCap,
    SlotSender,
    SlotSteps,
)
from service.features import check_jobs as job_feature
from service.heartbeat import LeaseKeeper
from service.observability.metrics import record_job_item
from service.sealed_numbers import (
    NumberSeal,
    SealedNumberError,
    job_item_binding,
    recheck_binding,
)
from service.store import check_jobs as job_store
from service.store.db import one_statement, transaction
from service.store.job_items import (
    ClaimedItem,
    ItemNoLongerOurs,
    begin_item_submit,
    end_item,
    hand_back_item,
    record_item_task,
)
from service.store.leases import LeasedTable
from service.store.scheduled_submits import hold_number_for_rechecks
from service.upstream.client import UpstreamClient
from service.upstream.reaction import UpstreamReaction

log = logging.getLogger(__name__)

__all__ = ["HANDED_BACK", "SKIPPED", "CallbackUrlFor", "JobItemSubmitter", "no_callback"]

# The client's callback URL for a check (None: no PHONEBRIDGE_PUBLIC_URL).
CallbackUrlFor = Callable[[int], Awaitable[str | None]]


async def no_callback(client_id: int) -> str | None:
    return None


class JobItemSubmitter:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        upstream: UpstreamClient,
        reaction: UpstreamReaction,
        seal: Callable[[], NumberSeal],
        *,
        lease: timedelta,
        callback_url_for: CallbackUrlFor = no_callback,
        clock: Clock = utc_now,
        rand: Callable[[], float] = random.random,
        marked_at_once: int = MARKED_AT_ONCE,
        cap: MarkedCap | None = None,
        leases: LeaseKeeper | None = None,
    ) -> None:
        """`cap` is the process's (service/engine/slot_sends.py), `leases` its heartbeat (None:
        `submitting` leases are not renewed)."""
        self._settings = settings
        self._leases = leases
        self._sessions = sessions
        self._upstream = upstream
        self._reaction = reaction
        self._seal = seal
        self._lease = lease
        self._call_margin = timedelta(seconds=settings.upstream_timeout_s + 1.0)
        self._callback_url_for = callback_url_for
        self._clock = clock
        self._rand = rand
        self._retry_s = settings.poll_backoff.initial_s
        # Steps 1-3 and the batch's outcomes, as for re-checks (service/engine/slot_sends.py).
        steps = SlotSteps(
            mark=begin_item_submit,
            release=hand_back_item,
            send=self._send,
            # A bug, not an answer: the item stays `submitting`; its lease decides (unknown).
            log=log,
            error_event="job_item.error",
            error_fields=lambda item: {"job_pk": item.job_pk},
            before_marks=_begin_jobs,
            prepare=self._prepare,
        )
        self._slots = SlotSender(
            sessions,
            reaction,
            steps,
            retry_s=self._retry_s,
            default_limit=settings.client_max_checks_per_day,
            clock=clock,
            marked_at_once=marked_at_once,
            cap=cap,
        )

    async def submit_items(
        self, items: list[ClaimedItem], token: uuid.UUID, now: datetime
    ) -> list[str]:
        """Steps 1-5 of the module's docstring for a batch's items; what became of each."""
        return await self._slots.send_batch(items, token, now, now + self._lease)

    async def _prepare(self, items: list[ClaimedItem]) -> None:
        """Before the slots: each client's callback URL is read (when its cache is stale) now,
        so that at its slot the call only sends. Only a warm-up: a read that fails here is
        logged, and the call's own read decides, as it did before."""
        for client_id in dict.fromkeys(item.client_id for item in items):
            try:
                await self._callback_url_for(client_id)
            except Exception as error:
                log.warning(
                    "job_item.callback_url_unread",
                    extra={"client_id": client_id, "error_type": type(error).__name__},
                )

    async def _send(
        self,
        item: ClaimedItem,
        token: uuid.UUID,
        lease_until: datetime,
        counted_on: date | None = None,
    ) -> str:
        if (
            self._clock() >= lease_until - self._call_margin
            or self._reaction.gate.last_state().paused
        ):
            return await self._hand_back(item, token, self._clock(), counted_on)
        if self._leases is None:
            return await self._call(item, token, counted_on)
        # Renewed while the call and its write last: the lease decides only for a dead worker.
        with self._leases.hold(LeasedTable.SCHEDULED_SUBMITS, token, (item.id,), lease_until):
            return await self._call(item, token, counted_on)

    async def _call(self, item: ClaimedItem, token: uuid.UUID, counted_on: date | None) -> str:
        """Steps 4-5 for an item: the call and its answer written."""
        try:
            number = self._seal().open(
                item.phone_number_sealed, job_item_binding(item.client_id, item.job_id, item.line)
            )
        except SealedNumberError:
            log.error("job_item.number_unreadable", extra={"job_pk": item.job_pk})
            return await self._end(item, token, JobItemState.UNKNOWN)
        callback = await self._callback_url_for(item.client_id)
        call = await self._upstream.submit_check(number, callback)
        answered_at = self._clock()
        outcome = classify_submit(call.answer, answered_at, surely_not_sent=call.surely_not_sent)
        await self._reaction.react(classify_answer(call.answer, answered_at), self._clock())
        log.info(
            "job_item.submitted",
            extra={
                "job_pk": item.job_pk,
                "line": item.line,
                "outcome": outcome.kind.value,
                "code": outcome.code,
                "request_id": outcome.request_id,
                "task_id": outcome.task_id,
            },
        )
        if outcome.kind in (SubmitKind.PENDING, SubmitKind.FINISHED):
            return await self._record_task(item, token, outcome, callback, number)
        if outcome.kind is SubmitKind.REJECTED:
            return await self._end(item, token, JobItemState.REFUSED)
        if outcome.reached_upstream:
            return await self._end(item, token, JobItemState.UNKNOWN)
        # Nothing reached upstream (the pause, RATE_LIMIT_EXCEEDED, no connection): later.
        retry_s = max(outcome.retry_after_s or 0.0, self._retry_s)
        return await self._hand_back(
            item, token, answered_at + timedelta(seconds=retry_s), counted_on
        )

    async def _record_task(
        self,
        item: ClaimedItem,
        token: uuid.UUID,
        outcome: SubmitOutcome,
        callback: str | None,
        number: str,
    ) -> str:
        now = self._clock()
        settings = self._settings
        first_poll_at = now + timedelta(
            seconds=next_poll_delay(settings.poll_backoff, 1, self._rand())
        )
        safety_net_poll_at = (
            None if callback is None else now + timedelta(seconds=settings.hinted_poll_initial_s)
        )
        task_id = outcome.task_id or f"{INSTANT_TASK_PREFIX}{uuid.uuid4().hex}"
        expires_at = now + timedelta(seconds=settings.task_ttl_s)
        recheck_at = None
        if outcome.result is not None:
            verdict = verdict_of(outcome.result.phone_status)
            recheck_at = recheck_due_at(item.recheck, verdict, 0, now)
        if recheck_at is not None:
            expires_at = waiting_deadline(recheck_at, settings.task_ttl_s)
        # Without an event or a number to hold for re-checks, the write is one statement.
        unit = (
            transaction if outcome.result is not None or item.recheck is not None else one_statement
        )
        try:
            async with unit(self._sessions) as session:
                task = await record_item_task(
                    session,
                    item,
                    token,
                    task_id=task_id,
                    result=outcome.result,
                    request_id=outcome.request_id,
                    now=now,
                    expires_at=expires_at,
                    first_poll_at=first_poll_at,
                    safety_net_poll_at=safety_net_poll_at,
                    waits_for_recheck=recheck_at is not None,
                )
                if task.created and item.recheck is not None and task.state is TaskState.PENDING:
                    # As a single check with `recheck`: the number is kept, sealed for its task.
                    await hold_number_for_rechecks(
                        session,
                        client_id=item.client_id,
                        task_pk=task.id,
                        sealed=self._seal().seal(number, recheck_binding(item.client_id, task_id)),
                        due_at=recheck_at,
                        now=now,
                    )
        except ItemNoLongerOurs:
            record_job_item(SKIPPED)
            return SKIPPED
        record_job_item("submitted")
        return "submitted"

    async def _end(self, item: ClaimedItem, token: uuid.UUID, state: JobItemState) -> str:
        async with one_statement(self._sessions) as session:
            await end_item(session, item, token, state, self._clock())
        record_job_item(state.value)
        return state.value

    async def _hand_back(
        self,
        item: ClaimedItem,
        token: uuid.UUID,
        due_at: datetime,
        counted_on: date | None = None,
    ) -> str:
        """Hand an item back unsent; a check counted for it on `counted_on` is given back."""
        return await self._slots.hand_back(item, token, due_at, counted_on)


async def _begin_jobs(session: AsyncSession, items: list[ClaimedItem], now: datetime) -> None:
    """A queued job with items about to be marked moves to running, in the marks' transaction
    and before them (see SlotSteps.before_marks); if none of them is marked after all, the
    running job's items are claimed again later."""
    for job_pk in sorted({item.job_pk for item in items}):
        job = await job_store.job_by_pk(session, job_pk)
        if job is not None:
            await job_feature.system_move(session, job, JobMove.BEGIN, now)
