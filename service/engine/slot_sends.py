"""One claimed batch of scheduled submits sent at its rate slots, for every purpose alike
(re-checks, service/engine/scheduled_submits.py; check job items, service/engine/job_items.py).

`SlotSender.send_batch` runs the steps a batch's submits share, in this order:

1. nothing is sent while upstream is paused or blocked (Retry-After): every submit is handed back,
   due after the block (at least the first poll backoff);
2. the submits are marked `submitting` in one transaction, each counted in its client's daily
   check budget first (service/engine/budget_gate.py), and committed; a submit no longer ours is
   skipped, one past its client's budget handed back for the next UTC day (its client's check
   jobs paused for the budget). A death of this process makes a marked submit's outcome unknown
   (never sent again), so a batch is marked a group of `MARKED_AT_ONCE` at a time, the next group
   (after step 1 again) once the group before last has its answers: a dying worker leaves at
   most GROUPS_IN_FLIGHT groups of a batch `unknown`, the calls that may have started, and the
   rest of the batch only claimed (it comes due again). Marking a whole batch at once made one
   SIGKILL in the chaos suite turn 310 of a job's 340 items `unknown` while most still waited
   for their slots, surely unsent;
3. each marked submit is sent at its slot of the shared rate ceiling (service/engine/slots.py:
   never late beside the next call; a starved loop still sends, with a spare slot); one that gets
   no slot is handed back unsent, its check given back;
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
from service.engine.slots import start_in_slots
from service.store.budgets import give_back_checks
from service.store.db import transaction
from service.upstream.reaction import UpstreamReaction

# What happened to a submit that was not sent: handed back to wait again, no longer ours, or a
# bug (not an answer: its lease decides).
HANDED_BACK = "handed_back"
SKIPPED = "skipped"
FAILED = "failed"

# Submits of a batch marked `submitting` in one transaction, and groups marked but not all
# answered at a time: what a worker's death can leave `unknown` of one batch. A batch is about
# 0.4 s of the ceiling's calls, so at the default ceiling (50 calls/s) it is a single group.
MARKED_AT_ONCE = 20
GROUPS_IN_FLIGHT = 2


async def _nothing_first(session: AsyncSession, submits: list[S], now: datetime) -> None:
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
      deadlock on it (seen in the suite); written first, the second group waits for the first.
    """

    mark: Callable[[AsyncSession, S, uuid.UUID, datetime, datetime], Awaitable[bool]]
    release: Callable[[AsyncSession, S, uuid.UUID, datetime, datetime], Awaitable[None]]
    send: Callable[[S, uuid.UUID, datetime, date | None], Awaitable[str]]
    log: logging.Logger
    error_event: str
    error_fields: Callable[[S], Mapping[str, object]]
    before_marks: Callable[[AsyncSession, list[S], datetime], Awaitable[None]] = _nothing_first


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
    ) -> None:
        """`retry_s` is the first poll backoff, `default_limit`
        PHONEBRIDGE_CLIENT_MAX_CHECKS_PER_DAY."""
        self._marked_at_once = marked_at_once
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
        outcomes: list[str] = []
        # Marked groups whose answers are not all in: (its marked submits, their started calls).
        in_flight: list[tuple[list[S], list[asyncio.Task[str]]]] = []
        for start in range(0, len(submits), self._marked_at_once):
            while len(in_flight) >= GROUPS_IN_FLIGHT:
                outcomes += await self._answers(*in_flight.pop(0))
            mark_at = now if start == 0 else self._clock()
            gate = await self._reaction.gate.state()
            if gate.paused or gate.blocked_for_s > 0:
                later = mark_at + timedelta(seconds=max(gate.blocked_for_s, self._retry_s))
                outcomes += [await self.hand_back(s, token, later) for s in submits[start:]]
                break
            group = submits[start : start + self._marked_at_once]
            began, started, group_outcomes = await self._start_group(
                group, token, mark_at, mark_at + lease
            )
            outcomes += group_outcomes
            in_flight.append((began, started))
        for began, started in in_flight:
            outcomes += await self._answers(began, started)
        return outcomes

    async def _start_group(
        self, submits: list[S], token: uuid.UUID, now: datetime, lease_until: datetime
    ) -> tuple[list[S], list[asyncio.Task[str]], list[str]]:
        """Steps 2-3 for one group: the marked submits, their started calls, and what became of
        the others."""
        steps = self._steps
        async with transaction(self._sessions) as session:

            async def mark(submit: S) -> bool:
                return await steps.mark(session, submit, token, now, lease_until)

            await steps.before_marks(session, submits, now)
            budgeted = await begin_within_budget(
                session, submits, mark, default_limit=self._default_limit, now=now
            )
        began, counted = budgeted.began, budgeted.counted
        outcomes = [SKIPPED] * (len(submits) - len(began) - len(budgeted.over_budget))

        async def release(session: AsyncSession, submit: S, due_at: datetime) -> None:
            await steps.release(session, submit, token, now, due_at)

        await wait_for_budget(self._sessions, budgeted.over_budget, release, now)
        outcomes += [HANDED_BACK] * len(budgeted.over_budget)

        async def send(submit: S) -> str:
            return await steps.send(submit, token, lease_until, counted.get(submit.id))

        # Committed `submitting`: each is sent at its slot, or handed back without a call.
        started, unstarted = await start_in_slots(
            self._reaction.limiter, self._reaction.gate, began, send
        )
        outcomes += [
            await self.hand_back(s, token, self._clock(), counted.get(s.id)) for s in unstarted
        ]
        return began, started, outcomes

    async def _answers(self, began: list[S], started: list[asyncio.Task[str]]) -> list[str]:
        """Step 4 for one group: its sent submits' outcomes, in its order."""
        steps = self._steps
        outcomes: list[str] = []
        for submit, result in zip(
            began, await asyncio.gather(*started, return_exceptions=True), strict=False
        ):
            if isinstance(result, BaseException):
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
