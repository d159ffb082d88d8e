"""(task, outcome, now) -> what happens to the task next.

Pure: the caller passes the task's snapshot, the classified outcome of one upstream call, the time
and a uniform random draw; the decision says which state the task takes and every column the
write-back sets. `poll_count` counts every upstream call made for the task, whatever it answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from service.domain.answers import Outcome, OutcomeKind, PhoneResult
from service.domain.backoff import BackoffPolicy, next_poll_delay
from service.domain.states import TaskState

# After RATE_LIMIT_EXCEEDED without a Retry-After, the task waits at least this long; the shared
# limiter, not the task's backoff, is what slows the fleet down.
DEFAULT_RATE_LIMITED_DELAY_S = 1.0


class DecisionKind(StrEnum):
    COMPLETE = "complete"
    FAIL = "fail"
    RETRY = "retry"
    EXPIRE = "expire"
    PAUSE = "pause"


FINAL_STATE = {
    DecisionKind.COMPLETE: TaskState.COMPLETED,
    DecisionKind.FAIL: TaskState.FAILED,
    DecisionKind.EXPIRE: TaskState.EXPIRED,
}


@dataclass(frozen=True)
class PollPolicy:
    backoff: BackoffPolicy
    rate_limited_delay_s: float = DEFAULT_RATE_LIMITED_DELAY_S


@dataclass(frozen=True)
class TaskSnapshot:
    """What the decision needs to know about a task before the call was made."""

    poll_count: int
    expires_at: datetime


@dataclass(frozen=True)
class PollDecision:
    kind: DecisionKind
    # The task's columns after this poll. `last_error` None means "leave it as it was": an answer
    # that is not an error does not erase the history of the last one.
    state: TaskState
    poll_count: int
    next_poll_at: datetime | None
    completed_at: datetime | None = None
    result: PhoneResult | None = None
    last_error: dict[str, Any] | None = None
    upstream_request_id: str | None = None

    @property
    def is_final(self) -> bool:
        return self.kind in FINAL_STATE


def decide_after_poll(
    task: TaskSnapshot, outcome: Outcome, now: datetime, policy: PollPolicy, rand: float
) -> PollDecision:
    """Decide what one upstream answer does to a pending task.

    - COMPLETED: the task is completed with the result (even if the answer arrives after the
      deadline: the call was made before it, and a result is never thrown away).
    - REJECTED: the task fails; `last_error` keeps upstream's reason.
    - PENDING, TRANSIENT: retried after the backoff delay; a transient fault is recorded.
    - RATE_LIMITED: retried after max(Retry-After, a short delay); not a backoff step.
    - ACCOUNT_PROBLEM: the task is not at fault: it stays pending (the caller opens the global
      pause) and shows the code in `last_error`.
    - Any non-final answer at or after the deadline expires the task.

    A retry is never scheduled past `expires_at`: when the next poll would land at or after it,
    `next_poll_at` is the deadline itself and the deadline sweep expires the task.
    """
    poll_count = task.poll_count + 1
    request_id = outcome.request_id

    if outcome.kind is OutcomeKind.COMPLETED and outcome.result is not None:
        return final_decision(
            DecisionKind.COMPLETE,
            poll_count,
            now,
            result=outcome.result,
            upstream_request_id=request_id,
        )
    # A PENDING answer is not an error; everything else that is not a result is recorded.
    error = (
        None
        if outcome.kind is OutcomeKind.PENDING
        else error_record(outcome.code, outcome.message, now)
    )
    if outcome.kind is OutcomeKind.REJECTED:
        return final_decision(
            DecisionKind.FAIL, poll_count, now, last_error=error, upstream_request_id=request_id
        )
    if now >= task.expires_at:
        return expire_decision(poll_count, now, last_error=error, upstream_request_id=request_id)

    if outcome.kind is OutcomeKind.RATE_LIMITED:
        delay = max(outcome.retry_after_s or 0.0, policy.rate_limited_delay_s)
        kind = DecisionKind.RETRY
    elif outcome.kind is OutcomeKind.ACCOUNT_PROBLEM:
        # The pause holds every task back; this one only needs to be due again when it lifts.
        delay = policy.backoff.initial_s
        kind = DecisionKind.PAUSE
    else:
        delay = next_poll_delay(policy.backoff, poll_count, rand)
        kind = DecisionKind.RETRY
    return PollDecision(
        kind,
        state=TaskState.PENDING,
        poll_count=poll_count,
        next_poll_at=min(now + timedelta(seconds=delay), task.expires_at),
        last_error=error,
        upstream_request_id=request_id,
    )


def expire_decision(
    poll_count: int,
    now: datetime,
    *,
    last_error: dict[str, Any] | None = None,
    upstream_request_id: str | None = None,
) -> PollDecision:
    """The task's deadline has passed without a result: it is expired, and never polled again."""
    return final_decision(
        DecisionKind.EXPIRE,
        poll_count,
        now,
        last_error=last_error,
        upstream_request_id=upstream_request_id,
    )


def final_decision(
    kind: DecisionKind,
    poll_count: int,
    now: datetime,
    *,
    result: PhoneResult | None = None,
    last_error: dict[str, Any] | None = None,
    upstream_request_id: str | None = None,
) -> PollDecision:
    """A decision that ends the task (complete, fail, expire): finished now, never polled again."""
    return PollDecision(
        kind,
        state=FINAL_STATE[kind],
        poll_count=poll_count,
        next_poll_at=None,
        completed_at=now,
        result=result,
        last_error=last_error,
        upstream_request_id=upstream_request_id,
    )


def error_record(code: str, message: str, now: datetime) -> dict[str, Any]:
    """The `last_error` JSON of the contract: {"code", "message", "at"}."""
    return {"code": code, "message": message, "at": now.isoformat()}
