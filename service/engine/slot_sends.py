"""One claimed batch of scheduled submits sent at its rate slots, for every purpose alike
(re-checks, service/engine/scheduled_submits.py; check job items, service/engine/job_items.py).

`SlotSender.send_batch` runs the steps a batch's submits share, in this order:

1. nothing is sent while upstream is paused or blocked (Retry-After): every submit is handed back,
   due after the block (at least the first poll backoff);
2. the submits are marked `submitting` in one transaction, each counted in its client's daily
   check budget first (service/engine/budget_gate.py), and committed; a submit no longer ours is
   skipped, one past its client's budget handed back for the next UTC day (its client's check
   jobs paused for the budget). A death of this process makes a marked submit's outcome unknown
   (never sent again), so a batch is marked a group at a time, and only under the process's
   `MarkedCap`: the submits the whole process (every batch it holds, both purposes) has marked
   and not yet answered or handed back, at most MOST_MARKED; a group (at most MARKED_AT_ONCE)
   is marked once that many are free, after step 1 again. A dying worker leaves at most
   MOST_MARKED submits `unknown`, the calls that may have started or are about to; the rest of
   its batches is only claimed (it comes due again). Marking a whole batch at once made one
   SIGKILL in the chaos suite turn 310 of a job's 340 items `unknown` while most still waited
   for their slots, surely unsent; a bound per batch (two groups of 20) still let a worker
   holding several batches mark 73, most of them waiting for its CPU;
3. each marked submit is sent at its slot of the shared rate ceiling (service/engine/slots.py:
   never late beside the next call; a starved loop still sends, with a spare slot); one that gets
   no slot, before its call or after the call missed its slot at the wire (NoSlot), is handed
   back unsent, its check given back;
4. each sent submit's outcome is gathered in the batch's order; an exception is a bug, not an
   answer: it is logged with the purpose's line and counts as FAILED (the submit stays
   `submitting` and its lease decides: unknown, never sent twice).

The outcomes come back group by group, each group's in this order: skipped, past the budget,
without a slot, then the sent ones (in the batch's order). What a mark, a send, a release and the
bug's log line are is the purpose's own (`SlotSteps`); `SlotSender.hand_back` is the one hand-back
of an unsent submit, which gives back the check counted for it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Generic

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock
from service.engine.budget_gate import S, begin_within_budget, wait_for_budget
from service.engine.slots import NoSlot, start_in_slots
from service.store.budgets import give_back_checks
from service.store.db import transaction
from service.upstream.reaction import UpstreamReaction

# What happened to a submit that was not sent: handed back to wait again, no longer ours, or a
# bug (not an answer: its lease decides).
HANDED_BACK = "handed_back"
SKIPPED = "skipped"
FAILED = "failed"

# Submits marked `submitting` in one transaction at most, and what a process may hold marked
# without their answers (every batch, both purposes): what a worker's death can leave `unknown`.
# Measured with the chaos suite's job (tests/chaos/test_job_chaos.py, 400 calls/s on a loaded
# 2-core machine): groups of 20 under a cap of 40 left 30-72 of 260 items `unknown` after four
# kills, most never sent; groups of 5 under a cap of 10 left 5-12, most of them sent.
# Three groups: one being called, one marked and waiting for its slots behind it, and one being
# marked while the oldest's last answers come. A group is marked once a group's worth is free,
# in practice once the oldest group's last answer is written, so with two the next group's
# mark, the last call's round trip and its answer's write left the ceiling's timeline unbooked,
# the more so the busier the machine (bench/jobs.py part (a) beside a CPU hog: 89.6 and 84.3
# items/s at 10, 91.3 and 90.4 at 15, the steady timeline left unbooked 4% and 9% at 10, 1% at
# 15; alone, 92 at both).
MARKED_AT_ONCE = 5
MOST_MARKED = 3 * MARKED_AT_ONCE


class MarkedCap:
    """The submits a process holds marked `submitting` and not yet answered or handed back, at
    most `most`: `take` waits until a group's worth is free, `give_back` frees them. One per
    process, shared by its SlotSenders."""

    def __init__(self, most: int = MOST_MARKED) -> None:
        self.most = most
        self.held = 0
        self._freed = asyncio.Event()

    async def take(self, wanted: int) -> tuple[int, bool]:
        """Take min(wanted, most), waiting until that many are free; returns how many and
        whether it had to wait."""
        need = min(wanted, self.most)
        waited = False
        while self.most - self.held < need:
            waited = True
            self._freed.clear()
            await self._freed.wait()
        self.held += need
        return need, waited

    def give_back(self, count: int = 1) -> None:
        self.held -= count
        self._freed.set()


async def _nothing_first(session: AsyncSession, submits: list[S], now: datetime) -> None:
    return None


async def _nothing_to_prepare(submits: list[S]) -> None:
    return None


@dataclass(frozen=True)
class SlotSteps(Generic[S]):
    """A purpose's own steps, each given the batch's lease token:

    - `mark(session, submit, token, now, lease_until)`: mark it `submitting` in the batch's
      transaction; False when it is no longer ours;
    - `release(session, submit, token, now, due_at)`: give it back unsent, waiting from `due_at`;
    - `send(submit, token, lease_until, counted_on)`: at its slot, the call and its answer
      written; an outcome;
    - `log`, `error_event`, `error_fields(submit)`: the purpose's log line for a bug;
    - `before_marks(session, submits, now)`: anything else in the marks' transaction, first (a
      job item begins its queued job). First, because a mark takes its job's row FOR SHARE: a
      row written after that is a lock upgrade, and two groups marking items of one job
      deadlock on it (seen in the suite); written first, the second group waits for the first;
    - `prepare(submits)`: after the marks, before the group's slots are reserved, anything the
      calls need that may wait (a job item's callback URL, read again every 30 s): at its slot
      a call only sends. Awaited between its slot and the call, a wait sends the calls behind
      it late and together, beside the next slots' calls.
    """

    mark: Callable[[AsyncSession, S, uuid.UUID, datetime, datetime], Awaitable[bool]]
    release: Callable[[AsyncSession, S, uuid.UUID, datetime, datetime], Awaitable[None]]
    send: Callable[[S, uuid.UUID, datetime, date | None], Awaitable[str]]
    log: logging.Logger
    error_event: str
    error_fields: Callable[[S], Mapping[str, object]]
    before_marks: Callable[[AsyncSession, list[S], datetime], Awaitable[None]] = _nothing_first
    prepare: Callable[[list[S]], Awaitable[None]] = _nothing_to_prepare


@dataclass(frozen=True)
class _StartedGroup(Generic[S]):
    """A group whose calls are started: the submits marked (and the day each one's check was
    counted on), their calls, and what became of the group's other submits."""

    began: list[S]
    counted: Mapping[int, date]
    started: list[asyncio.Task[str]]
    outcomes: list[str]


class SlotSender(Generic[S]):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        reaction: UpstreamReaction,
        steps: SlotSteps[S],
        *,
        retry_s: float,
        default_limit: int,
        clock: Clock,
        marked_at_once: int = MARKED_AT_ONCE,
        cap: MarkedCap | None = None,
    ) -> None:
        """`retry_s` is the first poll backoff, `default_limit`
        PHONEBRIDGE_CLIENT_MAX_CHECKS_PER_DAY; `cap` the process's (a SlotSender of its own
        without one)."""
        self._marked_at_once = marked_at_once
        self._cap = cap or MarkedCap()
        self._sessions = sessions
        self._reaction = reaction
        self._steps = steps
        self._retry_s = retry_s
        self._default_limit = default_limit
        self._clock = clock

    async def send_batch(
        self, submits: list[S], token: uuid.UUID, now: datetime, lease_until: datetime
    ) -> list[str]:
        """Steps 1-4 of the module's docstring for a batch's submits, a group at a time; what
        became of each. A group's lease runs from its mark as long as `lease_until` from `now`."""
        lease = lease_until - now
        # The submits handed back unmarked (upstream paused or blocked before their group).
        unmarked: list[str] = []
        # Each group's outcomes so far, marked submits and started calls, answered at the end.
        groups: list[_StartedGroup[S]] = []
        start = 0
        while start < len(submits):
            taken, waited = await self._cap.take(min(self._marked_at_once, len(submits) - start))
            mark_at = now if start == 0 and not waited else self._clock()
            gate = await self._reaction.gate.state()
            if gate.paused or gate.blocked_for_s > 0:
                self._cap.give_back(taken)
                later = mark_at + timedelta(seconds=max(gate.blocked_for_s, self._retry_s))
                unmarked = [await self.hand_back(s, token, later) for s in submits[start:]]
                break
            group = submits[start : start + taken]
            start += taken
            groups.append(await self._start_group(group, token, mark_at, mark_at + lease))
        answered: list[str] = []
        for started_group in groups:
            answered += started_group.outcomes + await self._answers(started_group, token)
        return answered + unmarked

    async def _start_group(
        self, submits: list[S], token: uuid.UUID, now: datetime, lease_until: datetime
    ) -> _StartedGroup[S]:
        """Steps 2-3 for one group, whose `len(submits)` of the cap are taken: the marked
        submits, their started calls (each gives its share of the cap back once answered), and
        what became of the others (theirs given back at once)."""
        steps = self._steps
        unanswered = len(submits)
        try:
            async with transaction(self._sessions) as session:

                async def mark(submit: S) -> bool:
                    return await steps.mark(session, submit, token, now, lease_until)

                await steps.before_marks(session, submits, now)
                budgeted = await begin_within_budget(
                    session, submits, mark, default_limit=self._default_limit, now=now
                )
            began, counted = budgeted.began, budgeted.counted
            self._cap.give_back(unanswered - len(began))
            unanswered = len(began)
            outcomes = [SKIPPED] * (len(submits) - len(began) - len(budgeted.over_budget))

            async def release(session: AsyncSession, submit: S, due_at: datetime) -> None:
                await steps.release(session, submit, token, now, due_at)

            await wait_for_budget(self._sessions, budgeted.over_budget, release, now)
            outcomes += [HANDED_BACK] * len(budgeted.over_budget)

            async def send(submit: S) -> str:
                return await steps.send(submit, token, lease_until, counted.get(submit.id))

            # Committed `submitting`: each is sent at its slot, or handed back without a call.
            await steps.prepare(began)
            started, unstarted = await start_in_slots(
                self._reaction.limiter, self._reaction.gate, began, send
            )
            for call in started:
                call.add_done_callback(lambda _: self._cap.give_back())
                unanswered -= 1
            for submit in unstarted:
                outcomes.append(
                    await self.hand_back(submit, token, self._clock(), counted.get(submit.id))
                )
                self._cap.give_back()
                unanswered -= 1
        finally:
            # A mark or a hand-back that raised: its share of the cap is free again (the submits
            # left `submitting` are the lease's to decide).
            self._cap.give_back(unanswered)
        return _StartedGroup(began, counted, started, outcomes)

    async def _answers(self, group: _StartedGroup[S], token: uuid.UUID) -> list[str]:
        """Step 4 for one group: its sent submits' outcomes, in its order."""
        steps = self._steps
        outcomes: list[str] = []
        for submit, result in zip(
            group.began, await asyncio.gather(*group.started, return_exceptions=True), strict=False
        ):
            if isinstance(result, NoSlot):
                # Its call missed its slot at the wire and got no new one: surely unsent.
                outcomes.append(
                    await self.hand_back(submit, token, self._clock(), group.counted.get(submit.id))
                )
            elif isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                steps.log.error(
                    steps.error_event,
                    extra={**steps.error_fields(submit), "error_type": type(result).__name__},
                    exc_info=result,
                )
                outcomes.append(FAILED)
            else:
                outcomes.append(result)
        return outcomes

    async def hand_back(
        self, submit: S, token: uuid.UUID, due_at: datetime, counted_on: date | None = None
    ) -> str:
        """Hand a submit back unsent, waiting from `due_at`; a check counted for it on
        `counted_on` is given back in the same transaction."""
        async with transaction(self._sessions) as session:
            await self._steps.release(session, submit, token, self._clock(), due_at)
            if counted_on is not None:
                await give_back_checks(session, client_id=submit.client_id, day=counted_on, n=1)
        return HANDED_BACK
