"""One leased task's poll, at its rate slot: check that the deadline, the lease and the gate still
allow a call, call upstream, classify the answer (pure), let the process react to it for every
call (pause, Retry-After, slow down), decide the task's next state (pure) and log it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from service.clock import Clock
from service.domain.answers import Outcome, OutcomeKind, RawAnswer, classify_answer
from service.domain.polling import (
    DecisionKind,
    PollDecision,
    PollPolicy,
    TaskSnapshot,
    decide_after_poll,
    expire_decision,
    last_call_start,
)
from service.domain.states import TaskSource
from service.engine.account_estimate import AccountEstimate
from service.engine.poll_write_back import NotPolled
from service.heartbeat import HeldLease
from service.observability.metrics import record_poll
from service.observability.traces import record_span, tracing_on, upstream_call_attributes
from service.store.leased_tasks import LeasedTask
from service.store.poll_results import PolledAnswer, PollWrite
from service.upstream.client import UpstreamClient
from service.upstream.reaction import UpstreamReaction

log = logging.getLogger(__name__)


class TaskPoll:
    def __init__(
        self,
        upstream: UpstreamClient,
        reaction: UpstreamReaction,
        policy: PollPolicy,
        estimate: AccountEstimate,
        *,
        lease_margin: timedelta,
        clock: Clock,
        rand: Callable[[], float],
    ) -> None:
        self._upstream = upstream
        self._reaction = reaction
        self._policy = policy
        self._estimate = estimate
        # A call must not start when the lease could end before the answer arrives: the next
        # round could then poll the same task at the same time.
        self._lease_margin = lease_margin
        self._clock = clock
        self._rand = rand

    async def poll(
        self, task: LeasedTask, held: HeldLease, *, probe: bool
    ) -> PollWrite | NotPolled:
        """Poll `task` now (its slot has come), or hand it back when it must not be called.
        `probe` marks the single call the scheduler sends while polling is paused."""
        now = self._clock()
        if now >= task.expires_at:
            return PollWrite(task.id, expire_decision(task.poll_count, now))
        if now > last_call_start(task.expires_at):
            # Its slot came too late for the call to be sure of reaching upstream before the
            # deadline: no call, and the deadline expires it.
            return NotPolled(task.id, not_before=task.expires_at)
        if now >= held.valid_until - self._lease_margin:
            return NotPolled(task.id)
        gate = self._reaction.gate.last_state()
        if gate.paused and not probe:
            return NotPolled(task.id)
        if gate.blocked_for_s > 0:
            return NotPolled(task.id, not_before=now + timedelta(seconds=gate.blocked_for_s))

        started = time.perf_counter()
        raw = await self._upstream.fetch_task_result(task.polled_task_id)
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
                recheck=task.recheck,
                rechecks_done=task.rechecks_done,
                earlier_polls=task.earlier_polls,
                target_p95_s=task.poll_target_p95_s,
            ),
            outcome,
            answered_at,
            self._policy,
            self._rand(),
            self._estimate.current,
        )
        log_poll(task, outcome, decision)
        polled = PolledAnswer(
            answered_at, outcome.code, raw.status_code, outcome.request_id, round(latency_s * 1000)
        )
        traceparent = None
        if tracing_on():
            traceparent = trace_poll(task, raw, outcome, decision, answered_at, latency_s)
        return PollWrite(task.id, decision, polled, traceparent)


def trace_poll(
    task: LeasedTask,
    raw: RawAnswer,
    outcome: Outcome,
    decision: PollDecision,
    answered_at: datetime,
    latency_s: float,
) -> str | None:
    """The poll's span, under the task's registration (traces on); answers its traceparent."""
    failed = raw.transport_error is not None or (raw.status_code or 0) >= 500
    return record_span(
        "task.poll",
        parent=task.traceparent,
        started_at=answered_at - timedelta(seconds=latency_s),
        ended_at=answered_at,
        attributes={
            **upstream_call_attributes(raw, outcome.code, outcome.request_id),
            "phonebridge.task_id": task.task_id,
            "phonebridge.poll_count": decision.poll_count,
            "phonebridge.decision": decision.kind.value,
        },
        error=outcome.message if failed else None,
    )


def log_poll(task: LeasedTask, outcome: Outcome, decision: PollDecision) -> None:
    """One line per poll: final states and retries at info, a pending answer at debug."""
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
    elif decision.kind is DecisionKind.RECHECK:
        log.info("poll.recheck_due", extra=extra | {"recheck_at": decision.recheck_at})
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
