"""Submit a check: `SubmitService.submit(client_id, check, idempotency_key)`.

Upstream's submit is not idempotent, so the order of writes is what keeps a check from being
submitted twice or lost (the intent row's steps are service/checks/intents.py's):

1. an intent row (`submitting`, with the Idempotency-Key) is committed before any call; a second
   request with the same key finds it and waits for its answer, never calls upstream itself. Under
   a daily check budget (service/domain/budgets.py) the check is counted in the same transaction,
   or, past the budget, the row is not kept and the answer is 429 CHECK_BUDGET_EXHAUSTED;
2. upstream is called under the shared rate ceiling, unless polling is paused;
3. the task (with its event when upstream finished at once) and the answer are written in one
   transaction; with `recheck`, so is the number, sealed, for as long as a re-check may come
   (service/store/scheduled_submits.py; the engine makes the re-checks).

A process killed between 2 and 3 leaves the row `submitting`; once its lease has passed, the next
request with that key turns it into SUBMIT_OUTCOME_UNKNOWN (502), the truth: upstream may hold a
check that phonebridge never saw answered. Answers that surely reached nothing upstream (the
pause, a refused connection, RATE_LIMIT_EXCEEDED, INVALID_ARGUMENT) release the key, so the client
may simply retry, and give the check back to the budget.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.checks.callback_hints import CallbackUrls
from service.checks.intents import SubmitIntents
from service.checks.submit_answers import (
    DifferentBody,
    SubmitAnswer,
    answer_without_task,
    over_budget_answer,
)
from service.checks.submit_slot import MAX_SLOT_WAIT_S, submit_at_slot
from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.answers import classify_answer
from service.domain.backoff import next_poll_delay
from service.domain.budgets import (
    budget_applies,
    utc_day,
)
from service.domain.checks import (
    INSTANT_TASK_PREFIX,
    CheckRequest,
    SubmitKind,
    SubmitOutcome,
    classify_submit,
)
from service.domain.phone_numbers import number_digest, number_digests
from service.domain.polling import last_call_start
from service.domain.rechecks import recheck_due_at, waiting_deadline
from service.domain.schedule import safety_net_delay
from service.domain.states import SubmissionState, TaskState
from service.domain.verdicts import verdict_of
from service.number_digests import number_digest_keys
from service.observability.metrics import record_submit
from service.observability.traces import (
    current_traceparent,
    record_span,
    tracing_on,
    upstream_call_attributes,
)
from service.sealed_numbers import NumberSeal, number_seal_for, recheck_binding
from service.store import checks as check_store
from service.store import freshness
from service.store.db import transaction
from service.store.estimates import load_estimate
from service.store.scheduled_submits import hold_number_for_rechecks
from service.upstream.client import SubmitCall, UpstreamClient
from service.upstream.reaction import UpstreamReaction

log = logging.getLogger(__name__)

# Set only by the tests that kill a real API between upstream's answer and the commit.
CRASH_AFTER_SUBMIT_VARIABLE = "PHONEBRIDGE_TEST_CRASH_AFTER_SUBMIT"


class SubmitService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis[Any],
        callbacks: CallbackUrls,
        reaction: UpstreamReaction,
        *,
        clock: Clock = utc_now,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._backoff = settings.poll_backoff
        self._rand = rand
        self._sessions = sessions
        self._redis = redis
        self._callbacks = callbacks
        self._clock = clock
        # The same reaction to refusals as polls: pause, gate, Retry-After and refusal window.
        self._reaction = reaction
        self._limiter = reaction.limiter
        self._upstream: UpstreamClient | None = None
        # Seals the numbers kept for re-checks; made on first use (it may read the key file).
        self._seal: NumberSeal | None = None
        # The owner of an intent row answers within this; after it, the outcome is unknown.
        lease = timedelta(seconds=settings.upstream_timeout_s + MAX_SLOT_WAIT_S + 2.0)
        self._intents = SubmitIntents(sessions, clock, lease)

    @cached_property
    def _number_keys(self) -> tuple[bytes, ...]:
        # Built on first use: it may read the key file under data_dir.
        return number_digest_keys(self._settings)

    async def close(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()

    def _number_seal(self) -> NumberSeal:
        if self._seal is None:
            self._seal = number_seal_for(self._settings)
        return self._seal

    def _client(self) -> UpstreamClient | None:
        settings = self._settings
        if settings.upstream_api_id is None or settings.upstream_api_secret is None:
            return None
        if self._upstream is None:
            self._upstream = UpstreamClient(settings)
        return self._upstream

    async def submit(
        self,
        client_id: int,
        check: CheckRequest,
        idempotency_key: str | None,
        *,
        checks_per_day: int = 0,
    ) -> SubmitAnswer:
        """Submit `check` for the client, or answer what the first request with that key was
        answered. `checks_per_day` is the client's daily check budget (0: none; the caller knows
        it with the client's other limits). Raises DifferentBody when the key was used with
        another body."""
        now = self._clock()
        fingerprints = check.fingerprints(self._number_keys)
        budget_day = utc_day(now) if budget_applies(checks_per_day) else None
        intent = await self._intents.begin(
            client_id=client_id,
            idempotency_key=idempotency_key,
            fingerprint=fingerprints[0],
            masked=check.masked,
            budget_day=budget_day,
            checks_per_day=checks_per_day,
        )
        submission = intent.submission
        if intent.over_budget:
            record_submit("over_budget")
            return over_budget_answer(checks_per_day, now)
        if not intent.created:
            if submission.fingerprint not in fingerprints:
                raise DifferentBody
            record_submit("replayed")
            return await self._intents.replay(submission)
        if check.max_age_s:
            fresh = await self._fresh_answer(submission.id, client_id, check)
            if fresh is not None:
                return fresh
        try:
            answer = await self._submit_once(submission.id, client_id, check, budget_day)
        except BaseException:
            # Whether upstream got the check is not known here: the row stays `submitting` and
            # becomes SUBMIT_OUTCOME_UNKNOWN when its lease passes.
            log.exception("check.submit_error", extra={"submission_id": submission.id})
            raise
        return answer

    async def _submit_once(
        self, submission_id: int, client_id: int, check: CheckRequest, budget_day: date | None
    ) -> SubmitAnswer:
        upstream = self._client()
        # Read before the slot (every 30 s from the database): at its slot a call only sends.
        callback = None if upstream is None else await self._callbacks.url_for(client_id)
        called_at = self._clock()

        async def send() -> SubmitCall:
            nonlocal called_at
            assert upstream is not None
            called_at = self._clock()
            return await upstream.submit_check(check.number.digits, callback)

        call = await submit_at_slot(
            self._redis,
            self._limiter,
            self._settings.pause_probe_s,
            None if upstream is None else send,
        )
        if isinstance(call, SubmitAnswer):
            # Refused before any call: nothing reached upstream.
            await self._intents.release(submission_id, client_id, budget_day)
            record_submit("refused")
            return call
        _crash_point_for_tests()
        answered_at = self._clock()
        outcome = classify_submit(call.answer, answered_at, surely_not_sent=call.surely_not_sent)
        if tracing_on():
            record_span(
                "upstream.submit",
                parent=current_traceparent(),
                started_at=called_at,
                ended_at=answered_at,
                attributes=upstream_call_attributes(call.answer, outcome.code, outcome.request_id),
            )
        # Upstream's answer as a poll's would be read: what it means for every call is the same.
        await self._reaction.react(classify_answer(call.answer, answered_at), self._clock())
        record_submit(outcome.kind.value)
        log.info(
            "check.submitted",
            extra={
                "outcome": outcome.kind.value,
                "code": outcome.code,
                "request_id": outcome.request_id,
                "task_id": outcome.task_id,
            },
        )
        if outcome.kind in (SubmitKind.PENDING, SubmitKind.FINISHED):
            return await self._record_task(submission_id, client_id, check, outcome, callback)
        answer = answer_without_task(outcome, self._settings.pause_probe_s)
        if outcome.reached_upstream:
            async with transaction(self._sessions) as session:
                await check_store.finish_submission(
                    session,
                    submission_id,
                    state=SubmissionState.UNKNOWN,
                    status=answer.status,
                    body_json=answer.body_json,
                    task_pk=None,
                    now=answered_at,
                )
        else:
            await self._intents.release(submission_id, client_id, budget_day)
        return answer

    async def _fresh_answer(
        self, submission_id: int, client_id: int, check: CheckRequest
    ) -> SubmitAnswer | None:
        """`max_age_s`: this client's latest final answer for the number, younger than that,
        answered as 200 with its task and no upstream call (kept for the Idempotency-Key)."""
        now = self._clock()
        async with transaction(self._sessions) as session:
            earlier = await freshness.recent_answer(
                session,
                client_id,
                number_digests(self._number_keys, check.number),
                max_age_s=check.max_age_s,
                now=now,
            )
            if earlier is None:
                return None
            body_json = await freshness.task_json_text(session, earlier)
            answer = SubmitAnswer(200, body_json)
            await check_store.finish_submission(
                session,
                submission_id,
                state=SubmissionState.ANSWERED,
                status=answer.status,
                body_json=answer.body_json,
                task_pk=earlier,
                now=now,
            )
        record_submit("fresh")
        return answer

    async def _safety_net_first_poll_at(self, now: datetime, latest: datetime) -> datetime:
        """The first poll of the safety net of a check with a callback: placed from the learnt
        completion times (service/domain/schedule.py), PHONEBRIDGE_HINTED_POLL_INITIAL_S on a
        cold estimate; never later than `latest`."""
        settings = self._settings
        async with self._sessions() as session:
            stored = await load_estimate(session, settings.upstream_account)
        estimate = None if stored is None else stored.as_of(now, settings.poll_estimate_half_life_s)
        delay = safety_net_delay(
            settings.schedule_policy,
            self._backoff,
            estimate,
            age_s=0.0,
            first_s=settings.hinted_poll_initial_s,
            rand=self._rand(),
        )
        return min(now + timedelta(seconds=delay), latest)

    async def _record_task(
        self,
        submission_id: int,
        client_id: int,
        check: CheckRequest,
        outcome: SubmitOutcome,
        callback: str | None,
    ) -> SubmitAnswer:
        now = self._clock()
        settings = self._settings
        # The submit answered PENDING: the next call keeps a registered task's second step,
        # unless the callback is to be waited for (the safety net's first poll).
        first_poll_at = now + timedelta(seconds=next_poll_delay(self._backoff, 1, self._rand()))
        task_id = outcome.task_id or f"{INSTANT_TASK_PREFIX}{uuid.uuid4().hex}"
        expires_at = now + timedelta(seconds=settings.task_ttl_s)
        safety_net_poll_at = (
            None
            if callback is None
            else await self._safety_net_first_poll_at(now, last_call_start(expires_at))
        )
        # An answer at once that asks for a re-check: the task keeps it and waits.
        recheck_at = None
        if outcome.result is not None:
            verdict = verdict_of(outcome.result.phone_status)
            recheck_at = recheck_due_at(check.recheck, verdict, 0, now)
        if recheck_at is not None:
            expires_at = waiting_deadline(recheck_at, settings.task_ttl_s)
        async with transaction(self._sessions) as session:
            task = await check_store.record_submitted_task(
                session,
                check_store.NewTask(
                    client_id=client_id,
                    task_id=task_id,
                    masked=check.masked,
                    metadata_json=check.metadata_json,
                    now=now,
                    expires_at=expires_at,
                    first_poll_at=first_poll_at,
                    safety_net_poll_at=safety_net_poll_at,
                    result=outcome.result,
                    request_id=outcome.request_id,
                    recheck=check.recheck,
                    waits_for_recheck=recheck_at is not None,
                    traceparent=current_traceparent(),
                    number_digest=number_digest(self._number_keys[0], check.number),
                ),
            )
            if task.created and check.recheck is not None and task.state is TaskState.PENDING:
                # The number is kept, sealed, for as long as a re-check may still come.
                await hold_number_for_rechecks(
                    session,
                    client_id=client_id,
                    task_pk=task.id,
                    sealed=self._number_seal().seal(
                        check.number.digits, recheck_binding(client_id, task_id)
                    ),
                    due_at=recheck_at,
                    now=now,
                )
            answer = SubmitAnswer(
                201,
                task.body_json,
                created_pending=task.created and task.state is TaskState.PENDING,
            )
            await check_store.finish_submission(
                session,
                submission_id,
                state=SubmissionState.ANSWERED,
                status=answer.status,
                body_json=answer.body_json,
                task_pk=task.id,
                now=now,
            )
        return answer


def _crash_point_for_tests() -> None:
    """Die here, between upstream's answer and the commit, when a test asks for it."""
    if os.environ.get(CRASH_AFTER_SUBMIT_VARIABLE) == "1":
        os.kill(os.getpid(), signal.SIGKILL)
