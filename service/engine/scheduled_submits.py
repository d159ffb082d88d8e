"""Scheduled submits, sent: one message's batch of claimed re-checks, each submitted upstream at its
slot of the shared rate ceiling. A batch's check job items go to service/engine/job_items.py, the
second purpose, which follows the same steps with its own answers.

For each submit still leased to us (service/store/scheduled_submits.py), in this order:

0. a re-check too close to its task's deadline to be sure of reaching upstream before it goes
   back unsent (the deadline sweep ends the task with the answer it has);
1-3. as for every purpose (service/engine/slot_sends.py): nothing is sent while upstream is paused
   or blocked; the submit is marked `submitting` (its task leased with it) and committed, its
   check counted under the client's daily budget (past it: handed back for the next UTC day, the
   client's check jobs paused); from here on, a death of this process makes its outcome unknown,
   and it is never sent again; its slot of the rate ceiling is waited for (a call never starts
   late beside the next one); a submit without a slot, or with too little lease left for its call,
   goes back to wait, unsent, its check given back;
4. upstream is called with the number, opened from its seal only now, and no callback (a
   re-check's upstream task_id is not the task's, so a callback could not be matched; polls find
   its answer);
5. the answer (service/domain/resubmits.py) and the submit's next state are written in one
   transaction (service/store/rechecks.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.answers import classify_answer
from service.domain.backoff import next_poll_delay
from service.domain.checks import INSTANT_TASK_PREFIX, classify_submit
from service.domain.polling import last_call_start
from service.domain.rechecks import RECHECK_NOT_SUBMITTED
from service.domain.resubmits import (
    ResubmitDecision,
    ResubmitKind,
    ResubmitTiming,
    decide_after_resubmit,
)
from service.domain.verdicts import verdict_of
from service.engine.job_items import CallbackUrlFor, JobItemSubmitter, no_callback
from service.engine.slot_sends import HANDED_BACK, SKIPPED, MarkedCap, SlotSender, SlotSteps
from service.heartbeat import LeaseKeeper
from service.observability.metrics import record_recheck
from service.sealed_numbers import NumberSeal, SealedNumberError, number_seal_for, recheck_binding
from service.store.db import transaction
from service.store.job_items import load_claimed_items
from service.store.rechecks import (
    InstantAnswer,
    end_with_last_answer,
    record_recheck_answered_again,
    record_recheck_last_answer,
    record_recheck_submitted,
)
from service.store.scheduled_submits import (
    ClaimedSubmit,
    begin_submit,
    hand_back_submit,
    load_claimed_submits,
)
from service.upstream.client import UpstreamClient
from service.upstream.reaction import UpstreamReaction

log = logging.getLogger(__name__)

# A submit marked `submitting` waits about this long at most for its slot of the rate ceiling
# (a batch is about a second of calls: the scheduler claims no faster than the ceiling); one whose
# lease has too little left for its call goes back to wait, unsent.
MAX_SLOT_WAIT_S = 5.0
# Set only by the tests that kill a real worker between upstream's answer and the commit.
CRASH_AFTER_RESUBMIT_VARIABLE = "PHONEBRIDGE_TEST_CRASH_AFTER_RESUBMIT"


@dataclass
class SubmitBatchReport:
    """What one batch did: submits sent, handed back unsent, or no longer ours."""

    sent: int = 0
    handed_back: int = 0
    skipped: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class ScheduledSubmitService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        upstream: UpstreamClient,
        reaction: UpstreamReaction,
        *,
        clock: Clock = utc_now,
        rand: Callable[[], float] = random.random,
        callback_url_for: CallbackUrlFor = no_callback,
        leases: LeaseKeeper | None = None,
    ) -> None:
        """`leases`: the worker's heartbeat, which renews a job item's `submitting` lease while
        its call lasts."""
        self._settings = settings
        self._sessions = sessions
        self._upstream = upstream
        self._reaction = reaction
        self._clock = clock
        self._rand = rand
        self._seal: NumberSeal | None = None
        self._batches: set[asyncio.Task[SubmitBatchReport]] = set()
        # As a single check's intent row: the slot wait, the call and a margin. Once it has
        # passed, whoever finds the submit still `submitting` declares its outcome unknown.
        self._lease = timedelta(seconds=settings.upstream_timeout_s + MAX_SLOT_WAIT_S + 2.0)
        # A call must not start when its answer could come after the lease.
        self._call_margin = timedelta(seconds=settings.upstream_timeout_s + 1.0)
        self._retry_s = settings.poll_backoff.initial_s
        # Steps 1-3 and the batch's outcomes, as for job items (service/engine/slot_sends.py).
        steps = SlotSteps(
            mark=begin_submit,
            # Past the budget too: a re-check whose deadline comes first ends with the answer it
            # has (as in step 0).
            release=hand_back_submit,
            send=self._send,
            # A bug, not an answer: the submit stays `submitting` and its lease decides
            # (unknown: the call may have been made).
            log=log,
            error_event="recheck.error",
            error_fields=lambda submit: {"task_pk": submit.task_pk},
        )
        # What this process may hold marked `submitting` without answers, both purposes.
        cap = MarkedCap()
        self._slots = SlotSender(
            sessions,
            reaction,
            steps,
            retry_s=self._retry_s,
            default_limit=settings.client_max_checks_per_day,
            clock=clock,
            cap=cap,
        )
        # The second purpose: check job items (service/engine/job_items.py).
        self._job_items = JobItemSubmitter(
            settings,
            sessions,
            upstream,
            reaction,
            self._number_seal,
            lease=self._lease,
            callback_url_for=callback_url_for,
            clock=clock,
            rand=rand,
            cap=cap,
            leases=leases,
        )

    def _number_seal(self) -> NumberSeal:
        if self._seal is None:
            self._seal = number_seal_for(self._settings)
        return self._seal

    async def start_batch(self, ids: Sequence[int], lease_token: uuid.UUID) -> int:
        """Start submitting a claimed batch in the background and return at once (the worker's
        entry point: its submits wait for rate slots, as a poll batch does)."""
        batch = asyncio.create_task(self._logged_batch(list(ids), lease_token))
        self._batches.add(batch)
        batch.add_done_callback(self._batches.discard)
        return len(ids)

    async def _logged_batch(self, ids: list[int], lease_token: uuid.UUID) -> SubmitBatchReport:
        try:
            return await self.submit_batch(ids, lease_token)
        except Exception:
            # Unsent submits come due again when their lease ends; one marked `submitting` is
            # declared unknown then, never sent twice.
            log.exception("recheck.batch_failed", extra={"submits": len(ids)})
            return SubmitBatchReport()

    async def close(self) -> None:
        for batch in list(self._batches):
            batch.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)

    async def submit_batch(self, ids: Sequence[int], lease_token: uuid.UUID) -> SubmitBatchReport:
        """Submit the scheduled submits of one message that are still ours."""
        report = SubmitBatchReport()
        now = self._clock()
        async with transaction(self._sessions) as session:
            claimed = await load_claimed_submits(session, ids, lease_token, now)
            items = await load_claimed_items(session, ids, lease_token, now)
        report.skipped = len(ids) - len(claimed) - len(items)
        rechecks, job_items = await asyncio.gather(
            self._submit_claimed(claimed, lease_token, now),
            self._job_items.submit_items(items, lease_token, now),
        )
        outcomes = rechecks + job_items
        for outcome in outcomes:
            if outcome == HANDED_BACK:
                report.handed_back += 1
            elif outcome == SKIPPED:
                report.skipped += 1
            else:
                report.sent += 1
            report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
        return report

    async def _submit_claimed(
        self, claimed: list[ClaimedSubmit], token: uuid.UUID, now: datetime
    ) -> list[str]:
        """Steps 0-5 of the module's docstring for a batch; what happened to each submit (a
        ResubmitKind, HANDED_BACK, SKIPPED or FAILED: service/engine/slot_sends.py)."""
        outcomes: list[str] = []
        to_send: list[ClaimedSubmit] = []
        for submit in claimed:
            if now > last_call_start(submit.expires_at):  # step 0
                outcomes.append(await self._hand_back(submit, token, submit.expires_at))
            else:
                to_send.append(submit)
        return outcomes + await self._slots.send_batch(to_send, token, now, now + self._lease)

    async def _send(
        self,
        submit: ClaimedSubmit,
        token: uuid.UUID,
        lease_until: datetime,
        counted_on: date | None,
    ) -> str:
        """At the submit's slot: the call (unless too little lease is left for its answer, or
        upstream was paused meanwhile) and its answer written."""
        if (
            self._clock() >= lease_until - self._call_margin
            or self._reaction.gate.last_state().paused
        ):
            return await self._hand_back(submit, token, self._clock(), counted_on)
        try:
            number = self._number_seal().open(
                submit.phone_number_sealed, recheck_binding(submit.client_id, submit.task_id)
            )
        except SealedNumberError as error:
            return await self._give_up_unsent(submit, token, str(error))
        decision = await self._call(submit, number)
        return await self._write(submit, token, decision, counted_on)

    async def _call(self, submit: ClaimedSubmit, number: str) -> ResubmitDecision:
        call = await self._upstream.submit_check(number, None)
        _crash_point_for_tests()
        answered_at = self._clock()
        outcome = classify_submit(call.answer, answered_at, surely_not_sent=call.surely_not_sent)
        # Upstream's answer as a poll's would be read: pause, Retry-After, slow down.
        await self._reaction.react(classify_answer(call.answer, answered_at), self._clock())
        verdict = None if outcome.result is None else verdict_of(outcome.result.phone_status)
        timing = ResubmitTiming(
            first_poll_s=next_poll_delay(self._settings.poll_backoff, 1, self._rand()),
            ttl_s=self._settings.task_ttl_s,
            retry_s=self._retry_s,
        )
        decision = decide_after_resubmit(
            outcome, verdict, submit.recheck, submit.rechecks_done, answered_at, timing
        )
        log.info(
            "recheck.submitted",
            extra={
                "task_id": submit.task_id,
                "task_pk": submit.task_pk,
                "outcome": outcome.kind.value,
                "code": outcome.code,
                "request_id": outcome.request_id,
                "upstream_task_id": outcome.task_id,
                "decision": decision.kind.value,
            },
        )
        return decision

    async def _write(
        self,
        submit: ClaimedSubmit,
        token: uuid.UUID,
        decision: ResubmitDecision,
        counted_on: date | None,
    ) -> str:
        now = self._clock()
        kind = decision.kind
        if kind is ResubmitKind.LATER:
            # Nothing reached upstream: its check is given back.
            assert decision.retry_at is not None
            await self._hand_back(submit, token, decision.retry_at, counted_on)
            record_recheck(kind.value)
            return kind.value
        async with transaction(self._sessions) as session:
            if kind is ResubmitKind.POLL:
                assert decision.upstream_task_id is not None
                assert decision.next_poll_at is not None
                assert decision.expires_at is not None
                written = await record_recheck_submitted(
                    session,
                    submit,
                    token,
                    upstream_task_id=decision.upstream_task_id,
                    request_id=decision.upstream_request_id,
                    code=decision.code,
                    next_poll_at=decision.next_poll_at,
                    expires_at=decision.expires_at,
                    keep_number=decision.keep_number,
                    now=now,
                )
            elif kind is ResubmitKind.ANSWERED:
                assert decision.result is not None
                answer = InstantAnswer(
                    f"{INSTANT_TASK_PREFIX}{uuid.uuid4().hex}",
                    decision.result,
                    decision.upstream_request_id,
                    decision.code,
                )
                if decision.recheck_at is not None:
                    assert decision.expires_at is not None
                    written = await record_recheck_answered_again(
                        session,
                        submit,
                        token,
                        answer,
                        recheck_at=decision.recheck_at,
                        expires_at=decision.expires_at,
                        now=now,
                    )
                else:
                    last = await record_recheck_last_answer(session, submit, token, answer, now=now)
                    written = last is not None
            else:
                assert decision.last_error is not None
                finished = await end_with_last_answer(
                    session,
                    submit,
                    token,
                    last_error=decision.last_error,
                    request_id=decision.upstream_request_id,
                    code=decision.code,
                    outcome_unknown=decision.outcome_unknown,
                    now=now,
                )
                written = finished is not None
        if not written:
            # A cancel or the deadline came first: the answer is not the task's any more.
            log.info("recheck.write_skipped", extra={"task_pk": submit.task_pk})
        record_recheck(kind.value)
        return kind.value

    async def _hand_back(
        self,
        submit: ClaimedSubmit,
        token: uuid.UUID,
        due_at: datetime,
        counted_on: date | None = None,
    ) -> str:
        """Hand a submit back unsent; a check counted for it on `counted_on` is given back."""
        return await self._slots.hand_back(submit, token, due_at, counted_on)

    async def _give_up_unsent(self, submit: ClaimedSubmit, token: uuid.UUID, why: str) -> str:
        """The number cannot be opened: nothing is sent, the task ends with its answer."""
        now = self._clock()
        log.error("recheck.number_unreadable", extra={"task_pk": submit.task_pk})
        async with transaction(self._sessions) as session:
            await end_with_last_answer(
                session,
                submit,
                token,
                last_error={
                    "code": RECHECK_NOT_SUBMITTED,
                    "message": f"{why}; the answer before it is the last",
                    "at": now.isoformat(),
                },
                request_id=None,
                code=None,
                outcome_unknown=False,
                now=now,
            )
        record_recheck(ResubmitKind.GIVE_UP.value)
        return ResubmitKind.GIVE_UP.value


def _crash_point_for_tests() -> None:
    """Die here, between upstream's answer and the commit, when a test asks for it."""
    if os.environ.get(CRASH_AFTER_RESUBMIT_VARIABLE) == "1":
        os.kill(os.getpid(), signal.SIGKILL)
