"""What upstream's answer to a re-submit (a re-check's submit of the number again) means for its
task, given the client's `recheck` (service/domain/rechecks.py).

Pure: the engine (service/engine/scheduled_submits.py) classifies the answer as any submit's
(`classify_submit`) and writes what `decide_after_resubmit` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from service.domain.answers import PhoneResult
from service.domain.checks import SubmitKind, SubmitOutcome
from service.domain.rechecks import (
    RECHECK_OUTCOME_UNKNOWN,
    RecheckPolicy,
    recheck_due_at,
    waiting_deadline,
)
from service.domain.verdicts import Verdict


class ResubmitKind(StrEnum):
    """What a re-submit's answer means for the task."""

    POLL = "poll"  # upstream took it: the new upstream task is polled
    ANSWERED = "answered"  # upstream answered at once: the new answer, re-checked again or last
    GIVE_UP = "give_up"  # refused, or its outcome is unknown: the task ends with its last answer
    LATER = "later"  # surely nothing reached upstream: submitted again at `retry_at`


@dataclass(frozen=True)
class ResubmitDecision:
    kind: ResubmitKind
    # Upstream's answer as a code (PENDING, OK, INVALID_ARGUMENT, SUBMIT_OUTCOME_UNKNOWN, ...).
    code: str
    upstream_request_id: str | None = None
    # POLL: the upstream task now polled, its first poll and its deadline.
    upstream_task_id: str | None = None
    next_poll_at: datetime | None = None
    # POLL, and ANSWERED with another re-check to come (the task's waiting deadline).
    expires_at: datetime | None = None
    # ANSWERED: the new answer, and when it is re-checked again (None: it is the last).
    result: PhoneResult | None = None
    recheck_at: datetime | None = None
    # GIVE_UP: why the answer the task has is its last, and whether the submit may have reached
    # upstream (its outcome is unknown) or surely did not take the check (refused).
    last_error: dict[str, Any] | None = None
    outcome_unknown: bool = False
    # LATER: when the re-check is due again.
    retry_at: datetime | None = None
    # Whether a re-check may still follow this one: the sealed number is kept only then.
    keep_number: bool = False

    @property
    def ends_task(self) -> bool:
        """Whether the task reaches its final state (completed with its last answer) now."""
        return self.kind is ResubmitKind.GIVE_UP or (
            self.kind is ResubmitKind.ANSWERED and self.recheck_at is None
        )


@dataclass(frozen=True)
class ResubmitTiming:
    """The engine's settings a re-submit's decision needs."""

    # Seconds to the first poll of the re-check's upstream task (the backoff's first step).
    first_poll_s: float
    # PHONEBRIDGE_TASK_TTL_S: the re-check's own upstream task's validity.
    ttl_s: float
    # When nothing reached upstream and upstream named no time: try again this much later.
    retry_s: float


def decide_after_resubmit(
    outcome: SubmitOutcome,
    verdict: Verdict | None,
    policy: RecheckPolicy,
    rechecks_done: int,
    now: datetime,
    timing: ResubmitTiming,
) -> ResubmitDecision:
    """What upstream's answer to the re-submit of a check that had `rechecks_done` re-checks
    before this one means (`verdict`: the verdict of an answer given at once).

    - PENDING: the new upstream task is polled from now, with a deadline of its own.
    - FINISHED: its answer is the task's new answer; re-checked again when the policy says so
      (`recheck_due_at`), else the task completes with it.
    - REJECTED (INVALID_ARGUMENT) and UNKNOWN: no re-check is made (a submit whose outcome is
      unknown is never repeated): the task completes with the answer it has, and says why.
    - ACCOUNT_PROBLEM, RATE_LIMITED, UNAVAILABLE: nothing was taken upstream; the re-check is due
      again after Retry-After (or `retry_s`).
    """
    done = rechecks_done + 1
    request_id = outcome.request_id
    if outcome.kind is SubmitKind.PENDING:
        return ResubmitDecision(
            ResubmitKind.POLL,
            outcome.code,
            upstream_request_id=request_id,
            upstream_task_id=outcome.task_id,
            next_poll_at=now + timedelta(seconds=timing.first_poll_s),
            expires_at=now + timedelta(seconds=timing.ttl_s),
            keep_number=done < policy.max_rechecks,
        )
    if outcome.kind is SubmitKind.FINISHED and outcome.result is not None:
        again_at = recheck_due_at(policy, verdict, done, now)
        return ResubmitDecision(
            ResubmitKind.ANSWERED,
            outcome.code,
            upstream_request_id=request_id,
            result=outcome.result,
            recheck_at=again_at,
            expires_at=None if again_at is None else waiting_deadline(again_at, timing.ttl_s),
            keep_number=again_at is not None,
        )
    # (FINISHED always carries its result; were one to come without, it is no answer to use.)
    if outcome.kind in (SubmitKind.REJECTED, SubmitKind.UNKNOWN, SubmitKind.FINISHED):
        code = RECHECK_OUTCOME_UNKNOWN if outcome.kind is SubmitKind.UNKNOWN else outcome.code
        return ResubmitDecision(
            ResubmitKind.GIVE_UP,
            outcome.code,
            upstream_request_id=request_id,
            outcome_unknown=outcome.kind is SubmitKind.UNKNOWN,
            last_error={
                "code": code,
                "message": f"the re-check was not made ({outcome.message}); the answer before "
                "it is the last",
                "at": now.isoformat(),
            },
        )
    delay = max(outcome.retry_after_s or 0.0, timing.retry_s)
    return ResubmitDecision(
        ResubmitKind.LATER,
        outcome.code,
        upstream_request_id=request_id,
        retry_at=now + timedelta(seconds=delay),
        keep_number=True,
    )
