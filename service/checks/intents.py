"""The intent row of a submitted check (`check_submissions`), which keeps upstream's submit, not
idempotent itself, from being made twice or lost (service/checks/submit.py says the order):

- begun, committed before any call, under the client's Idempotency-Key; under a daily check
  budget (service/domain/budgets.py) the check is counted in the same transaction, or, past the
  budget, the row is not kept;
- released when nothing reached upstream: the key is free again and the check not counted;
- replayed to a second request with the same key: the first one's answer, waited for while it is
  in flight, or SUBMIT_OUTCOME_UNKNOWN once its lease has passed without one (the owner died
  between upstream's answer and the commit).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.checks.submit_answers import SubmitAnswer, unavailable_answer, unknown_outcome_answer
from service.clock import Clock
from service.store import checks as check_store
from service.store.budgets import give_back_checks, take_checks
from service.store.db import transaction

log = logging.getLogger(__name__)

# A duplicate request re-reads the first one's row this often while it is in flight.
REPLAY_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Intent:
    submission: check_store.Submission
    # False: the Idempotency-Key named a row written before (this request replays it).
    created: bool
    # The daily budget had no check left: nothing is kept.
    over_budget: bool


class SubmitIntents:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, lease: timedelta
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        # The owner of an intent row answers within this; after it, the outcome is unknown.
        self._lease = lease

    async def begin(
        self,
        *,
        client_id: int,
        idempotency_key: str | None,
        fingerprint: bytes,
        masked: str,
        budget_day: date | None,
        checks_per_day: int,
    ) -> Intent:
        """The intent row, new and counted under the budget of `budget_day` (None: no budget),
        or the row already holding that Idempotency-Key."""
        now = self._clock()
        async with transaction(self._sessions) as session:
            submission, created = await check_store.begin_submission(
                session,
                client_id=client_id,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                masked=masked,
                now=now,
                lease_until=now + self._lease,
            )
            over_budget = (
                created
                and budget_day is not None
                and not await take_checks(
                    session, client_id=client_id, day=budget_day, n=1, limit=checks_per_day
                )
            )
            if over_budget:
                # Nothing is kept: the same Idempotency-Key is a new request tomorrow.
                await check_store.release_submission(session, submission.id)
        return Intent(submission, created, over_budget)

    async def release(self, submission_id: int, client_id: int, budget_day: date | None) -> None:
        """Nothing reached upstream: the key is free again and the check is not counted."""
        async with transaction(self._sessions) as session:
            await check_store.release_submission(session, submission_id)
            if budget_day is not None:
                await give_back_checks(session, client_id=client_id, day=budget_day, n=1)

    async def replay(self, submission: check_store.Submission) -> SubmitAnswer:
        """The first request's answer: waited for while it is in flight, declared unknown once
        its lease has passed without one."""
        while True:
            if submission.response_status is not None and submission.response_body is not None:
                return SubmitAnswer(
                    submission.response_status, submission.response_body, replayed=True
                )
            now = self._clock()
            if now >= submission.lease_until:
                unknown = unknown_outcome_answer()
                async with transaction(self._sessions) as session:
                    marked = await check_store.mark_unknown(
                        session,
                        submission.id,
                        status=unknown.status,
                        body_json=unknown.body_json,
                        now=now,
                    )
                if marked is not None:
                    log.warning("check.outcome_unknown", extra={"submission_id": submission.id})
                    return SubmitAnswer(unknown.status, unknown.body_json, replayed=True)
            else:
                await asyncio.sleep(REPLAY_POLL_S)
            assert submission.idempotency_key is not None
            async with transaction(self._sessions) as session:
                current = await check_store.find_submission(
                    session, submission.client_id, submission.idempotency_key
                )
            if current is None:
                # The first request released the key (nothing reached upstream): its answer is
                # not kept; this request may be retried as a new one.
                return unavailable_answer("a request with this Idempotency-Key just failed; retry")
            submission = current
