"""(task, outcome, now) -> what happens to the task next.

Pure: the caller passes the task's snapshot, the classified outcome of one upstream call, the time,
a uniform random draw and what is known of completion times; the decision says which state the
task takes and every column the write-back sets, and what a completion teaches the estimate.
`poll_count` counts every upstream call made for the task, whatever it answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from service.domain.answers import Outcome, OutcomeKind, PhoneResult
from service.domain.backoff import BackoffPolicy
from service.domain.completion import (
    CompletionEstimate,
    Observation,
    completion_interval,
    not_answered_by,
)
from service.domain.rechecks import RecheckPolicy, recheck_due_at, waiting_deadline
from service.domain.schedule import (
    SchedulePolicy,
    finish_probability,
    next_delay,
    safety_net_delay,
)
from service.domain.states import TaskState
from service.domain.verdicts import verdict_of

# After RATE_LIMIT_EXCEEDED without a Retry-After, the task waits at least this long; the shared
# limiter, not the task's backoff, is what slows the fleet down.
DEFAULT_RATE_LIMITED_DELAY_S = 1.0

# No call starts later than this before a task's deadline: a call is only as punctual as the
# event loops, the connection pool and the network between the decision and upstream (a loaded
# machine has shown 0.16 s), and the contract promises that no poll reaches upstream after
# `expires_at`. A task due within the margin waits for its deadline and expires there.
DEADLINE_MARGIN = timedelta(seconds=1)


def last_call_start(expires_at: datetime) -> datetime:
    """The latest moment a poll of a task with this deadline may start."""
    return expires_at - DEADLINE_MARGIN


class DecisionKind(StrEnum):
    COMPLETE = "complete"
    # An answer the client's `recheck` asks to check again: pending, no poll, a re-submit due.
    RECHECK = "recheck"
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
    schedule: SchedulePolicy = field(default_factory=SchedulePolicy)
    # The first safety-net poll's age while nothing is known of completion times
    # (PHONEBRIDGE_HINTED_POLL_INITIAL_S).
    safety_net_first_s: float = 30.0
    # PHONEBRIDGE_TASK_TTL_S: how long a task waiting for its re-check may wait to be submitted.
    task_ttl_s: float = 86_400.0


@dataclass(frozen=True)
class TaskSnapshot:
    """What the decision needs to know about a task before the call was made. Without
    `submitted_at` the task's age is unknown: plain backoff, and nothing learnt."""

    poll_count: int
    expires_at: datetime
    submitted_at: datetime | None = None
    # The last PENDING answer: a completion arrived after it.
    last_pending_at: datetime | None = None
    # Upstream calls made for the task before its polls: 1 for a check submitted through
    # phonebridge (the submit answered PENDING), so its polls keep a registered task's steps.
    calls_before: int = 0
    # Its check carried a callback that can be trusted (service/domain/callback_trust.py): polled
    # on the sparse safety net, a hint makes it due at once.
    safety_net: bool = False
    # The client's `recheck` (service/domain/rechecks.py) and the re-checks made so far; the
    # polls of the earlier upstream checks (the schedule counts the current check's own, from
    # its own submission: `submitted_at` is the current check's).
    recheck: RecheckPolicy | None = None
    rechecks_done: int = 0
    earlier_polls: int = 0
    # The client's own lag target (`phonebridge api-key limits --poll-target-p95-s`); None: the
    # setting's (PHONEBRIDGE_POLL_TARGET_P95_S), if any.
    target_p95_s: float | None = None


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
    # Set on a PENDING answer (None: leave the column as it was).
    last_pending_at: datetime | None = None
    # The estimated chance that the answer has arrived by next_poll_at; the claim serves a
    # client's due tasks in this order (None: unknown).
    finish_p: float | None = None
    # What a completion teaches the completion-time estimate; or, for the last call a task gets
    # before its deadline, that its answer had not come by then (right-censored).
    observation: Observation | None = None
    # RECHECK: when the number is submitted again, and the task's deadline until then (None:
    # leave it as it was).
    recheck_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.kind in FINAL_STATE


def decide_after_poll(
    task: TaskSnapshot,
    outcome: Outcome,
    now: datetime,
    policy: PollPolicy,
    rand: float,
    estimate: CompletionEstimate | None = None,
) -> PollDecision:
    """Decide what one upstream answer does to a pending task.

    - COMPLETED: the task is completed with the result (even if the answer arrives after the
      deadline: the call was made before it, and a result is never thrown away); unless the
      client's `recheck` asks for this answer to be checked again (RECHECK): the task then keeps
      the result, stays pending without polls, and its number is due to be submitted again.
    - REJECTED: the task fails; `last_error` keeps upstream's reason.
    - PENDING, TRANSIENT: retried after the schedule's delay (service/domain/schedule.py: the
      adaptive rule on a warm `estimate`, else backoff); a transient fault is recorded.
    - RATE_LIMITED: retried after max(Retry-After, a short delay); not a backoff step.
    - ACCOUNT_PROBLEM: the task is not at fault: it stays pending (the caller opens the global
      pause) and shows the code in `last_error`.
    - Any non-final answer at or after the deadline expires the task.

    A retry is never scheduled where it could reach upstream after `expires_at`: when the next
    poll would start later than `last_call_start`, `next_poll_at` is the deadline itself and the
    deadline sweep expires the task.
    """
    poll_count = task.poll_count + 1
    request_id = outcome.request_id

    if outcome.kind is OutcomeKind.COMPLETED and outcome.result is not None:
        recheck_at = recheck_due_at(
            task.recheck, verdict_of(outcome.result.phone_status), task.rechecks_done, now
        )
        if recheck_at is not None:
            return PollDecision(
                DecisionKind.RECHECK,
                state=TaskState.PENDING,
                poll_count=poll_count,
                next_poll_at=None,
                result=outcome.result,
                upstream_request_id=request_id,
                observation=_observation(task, now),
                recheck_at=recheck_at,
                expires_at=waiting_deadline(recheck_at, policy.task_ttl_s),
            )
        completed = final_decision(
            DecisionKind.COMPLETE,
            poll_count,
            now,
            result=outcome.result,
            upstream_request_id=request_id,
        )
        return replace(completed, observation=_observation(task, now))
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
    pending_at = now if outcome.kind is OutcomeKind.PENDING else None
    if now >= task.expires_at:
        expired = expire_decision(poll_count, now, last_error=error, upstream_request_id=request_id)
        return replace(expired, observation=_censored(task, pending_at))

    if outcome.kind is OutcomeKind.RATE_LIMITED:
        delay = max(outcome.retry_after_s or 0.0, policy.rate_limited_delay_s)
        kind = DecisionKind.RETRY
    elif outcome.kind is OutcomeKind.ACCOUNT_PROBLEM:
        # The pause holds every task back; this one only needs to be due again when it lifts.
        delay = policy.backoff.initial_s
        kind = DecisionKind.PAUSE
    else:
        delay = _pending_delay(task, now, policy, rand, estimate)
        kind = DecisionKind.RETRY
    next_poll_at = now + timedelta(seconds=delay)
    censored = None
    if next_poll_at > last_call_start(task.expires_at):
        # No call comes after this one: the deadline expires the task unanswered.
        next_poll_at = task.expires_at
        censored = _censored(task, pending_at)
    return PollDecision(
        kind,
        state=TaskState.PENDING,
        poll_count=poll_count,
        next_poll_at=next_poll_at,
        last_error=error,
        upstream_request_id=request_id,
        last_pending_at=pending_at,
        finish_p=_finish_p(task, pending_at, next_poll_at, estimate),
        observation=censored,
    )


def _pending_delay(
    task: TaskSnapshot,
    now: datetime,
    policy: PollPolicy,
    rand: float,
    estimate: CompletionEstimate | None,
) -> float:
    """Seconds to the next poll of a task still pending after this one: the safety net's when
    its callback is trusted, else the schedule's."""
    age_s = _age_s(task, now)
    if task.safety_net and age_s is not None:
        return safety_net_delay(
            policy.schedule,
            policy.backoff,
            estimate,
            age_s=age_s,
            first_s=policy.safety_net_first_s,
            rand=rand,
        )
    return next_delay(
        policy.schedule,
        policy.backoff,
        estimate if age_s is not None else None,
        polls_made=task.calls_before + task.poll_count - task.earlier_polls + 1,
        age_s=age_s or 0.0,
        rand=rand,
        target_p95_s=task.target_p95_s,
    )


def _age_s(task: TaskSnapshot, now: datetime) -> float | None:
    if task.submitted_at is None:
        return None
    return max((now - task.submitted_at).total_seconds(), 0.0)


def _observation(task: TaskSnapshot, now: datetime) -> Observation | None:
    if task.submitted_at is None:
        return None
    last_pending = task.last_pending_at
    return completion_interval(
        task.submitted_at.timestamp(),
        None if last_pending is None else last_pending.timestamp(),
        now.timestamp(),
    )


def _censored(task: TaskSnapshot, pending_at: datetime | None) -> Observation | None:
    """What a task that will expire unanswered teaches the estimate: its answer had not come by
    its last PENDING answer (this one's, else the last recorded)."""
    last_pending = pending_at or task.last_pending_at
    if task.submitted_at is None or last_pending is None:
        return None
    return not_answered_by(task.submitted_at.timestamp(), last_pending.timestamp())


def _finish_p(
    task: TaskSnapshot,
    pending_at: datetime | None,
    next_poll_at: datetime,
    estimate: CompletionEstimate | None,
) -> float | None:
    """The chance the answer is there at `next_poll_at`, given the latest PENDING answer."""
    if task.submitted_at is None:
        return None
    last_pending = pending_at or task.last_pending_at
    from_age = 0.0 if last_pending is None else (last_pending - task.submitted_at).total_seconds()
    to_age = (next_poll_at - task.submitted_at).total_seconds()
    return finish_probability(estimate, from_age, to_age)


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
