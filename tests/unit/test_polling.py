"""(task, outcome, now) -> decision: every outcome kind, the deadline, and the ranges."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.answers import Outcome, OutcomeKind, PhoneResult
from service.domain.backoff import BackoffPolicy
from service.domain.completion import Observation
from service.domain.polling import (
    DEADLINE_MARGIN,
    DecisionKind,
    PollPolicy,
    TaskSnapshot,
    decide_after_poll,
    expire_decision,
    last_call_start,
)
from service.domain.rechecks import RecheckPolicy
from service.domain.verdicts import Verdict

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = PollPolicy(BackoffPolicy(initial_s=2.0, max_s=300.0), rate_limited_delay_s=1.0)
FAR = NOW + timedelta(hours=20)
RID = "TID1"


def outcome(kind: OutcomeKind, code: str, **extra: object) -> Outcome:
    return Outcome(kind, code, f"{code} message", request_id=RID, **extra)  # type: ignore[arg-type]


COMPLETED = outcome(OutcomeKind.COMPLETED, "OK", result=PhoneResult("0062****", "ring"))
PENDING = outcome(OutcomeKind.PENDING, "PENDING")
REJECTED = outcome(OutcomeKind.REJECTED, "INVALID_ARGUMENT")
RATE_LIMITED = outcome(OutcomeKind.RATE_LIMITED, "RATE_LIMIT_EXCEEDED")
ACCOUNT = outcome(OutcomeKind.ACCOUNT_PROBLEM, "KEY_EXPIRED")
TRANSIENT = outcome(OutcomeKind.TRANSIENT, "INTERNAL_ERROR")
TIMEOUT = Outcome(OutcomeKind.TRANSIENT, "TIMEOUT", "timeout", answered=False)

# (name, outcome, polls before, expected kind, state, next poll in seconds or None, error code)
CASES = [
    ("completed", COMPLETED, 0, DecisionKind.COMPLETE, "completed", None, None),
    ("rejected", REJECTED, 2, DecisionKind.FAIL, "failed", None, "INVALID_ARGUMENT"),
    ("first_pending", PENDING, 0, DecisionKind.RETRY, "pending", 2.0, None),
    ("third_pending", PENDING, 2, DecisionKind.RETRY, "pending", 8.0, None),
    ("late_pending_capped", PENDING, 40, DecisionKind.RETRY, "pending", 300.0, None),
    ("transient", TRANSIENT, 1, DecisionKind.RETRY, "pending", 4.0, "INTERNAL_ERROR"),
    ("timeout", TIMEOUT, 0, DecisionKind.RETRY, "pending", 2.0, "TIMEOUT"),
    ("rate_limited", RATE_LIMITED, 5, DecisionKind.RETRY, "pending", 1.0, "RATE_LIMIT_EXCEEDED"),
    ("account_problem", ACCOUNT, 3, DecisionKind.PAUSE, "pending", 2.0, "KEY_EXPIRED"),
]


@pytest.mark.parametrize(
    ("answer", "polls", "kind", "state", "next_in", "error_code"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decision_per_outcome(
    answer: Outcome,
    polls: int,
    kind: DecisionKind,
    state: str,
    next_in: float | None,
    error_code: str | None,
) -> None:
    decision = decide_after_poll(TaskSnapshot(polls, FAR), answer, NOW, POLICY, rand=0.5)
    assert decision.kind is kind
    assert decision.state == state
    assert decision.poll_count == polls + 1
    expected_next = None if next_in is None else NOW + timedelta(seconds=next_in)
    assert decision.next_poll_at == expected_next
    assert decision.upstream_request_id == answer.request_id
    if error_code is None:
        assert decision.last_error is None
    else:
        assert decision.last_error == {
            "code": error_code,
            "message": answer.message,
            "at": NOW.isoformat(),
        }


def test_completion_records_result_and_time() -> None:
    decision = decide_after_poll(TaskSnapshot(0, FAR), COMPLETED, NOW, POLICY, 0.5)
    assert decision.result == PhoneResult("0062****", "ring")
    assert decision.completed_at == NOW
    assert decision.is_final


def test_failure_is_final_with_completion_time() -> None:
    decision = decide_after_poll(TaskSnapshot(0, FAR), REJECTED, NOW, POLICY, 0.5)
    assert decision.completed_at == NOW
    assert decision.is_final


@pytest.mark.parametrize("answer", [PENDING, TRANSIENT, TIMEOUT, RATE_LIMITED, ACCOUNT])
def test_non_final_answers_keep_the_task_pending(answer: Outcome) -> None:
    decision = decide_after_poll(TaskSnapshot(0, FAR), answer, NOW, POLICY, 0.5)
    assert not decision.is_final
    assert decision.completed_at is None
    assert decision.result is None


def test_rate_limit_waits_for_retry_after_when_longer() -> None:
    limited = outcome(OutcomeKind.RATE_LIMITED, "RATE_LIMIT_EXCEEDED", retry_after_s=30.0)
    decision = decide_after_poll(TaskSnapshot(0, FAR), limited, NOW, POLICY, 0.5)
    assert decision.next_poll_at == NOW + timedelta(seconds=30)


def test_rate_limit_waits_at_least_the_short_delay() -> None:
    limited = outcome(OutcomeKind.RATE_LIMITED, "RATE_LIMIT_EXCEEDED", retry_after_s=0.1)
    decision = decide_after_poll(TaskSnapshot(0, FAR), limited, NOW, POLICY, 0.5)
    assert decision.next_poll_at == NOW + timedelta(seconds=1)


def test_rate_limit_is_not_a_backoff_step() -> None:
    decision = decide_after_poll(TaskSnapshot(20, FAR), RATE_LIMITED, NOW, POLICY, 0.5)
    assert decision.next_poll_at == NOW + timedelta(seconds=1)


def test_retry_that_would_pass_the_deadline_lands_on_it() -> None:
    deadline = NOW + timedelta(seconds=3)
    decision = decide_after_poll(TaskSnapshot(5, deadline), PENDING, NOW, POLICY, 0.5)
    assert decision.kind is DecisionKind.RETRY
    assert decision.next_poll_at == deadline


def test_the_last_call_before_the_deadline_teaches_that_the_answer_had_not_come() -> None:
    """No call follows one whose next poll lands on the deadline: the task will expire, and the
    estimate learns its answer comes, if ever, after this PENDING answer's age (right-censored)."""
    deadline = NOW + timedelta(seconds=3)
    task = TaskSnapshot(5, deadline, submitted_at=NOW - timedelta(seconds=60))
    decision = decide_after_poll(task, PENDING, NOW, POLICY, 0.5)
    assert decision.next_poll_at == deadline
    assert decision.observation == Observation(60.0, math.inf)
    # A fault answers nothing about the task: censored at its last PENDING answer instead.
    seen_at = NOW - timedelta(seconds=10)
    faulty = TaskSnapshot(
        5, deadline, submitted_at=NOW - timedelta(seconds=60), last_pending_at=seen_at
    )
    assert decide_after_poll(faulty, TRANSIENT, NOW, POLICY, 0.5).observation == Observation(
        50.0, math.inf
    )


def test_a_retry_with_room_before_the_deadline_teaches_nothing() -> None:
    task = TaskSnapshot(1, FAR, submitted_at=NOW - timedelta(seconds=60))
    assert decide_after_poll(task, PENDING, NOW, POLICY, 0.5).observation is None


def test_a_pending_answer_after_the_deadline_expires_the_task_censored() -> None:
    task = TaskSnapshot(5, NOW, submitted_at=NOW - timedelta(seconds=90))
    decision = decide_after_poll(task, PENDING, NOW, POLICY, 0.5)
    assert decision.kind is DecisionKind.EXPIRE
    assert decision.observation == Observation(90.0, math.inf)
    # Without its submission time the task's age is unknown: nothing is learnt.
    unknown_age = decide_after_poll(TaskSnapshot(5, NOW), PENDING, NOW, POLICY, 0.5)
    assert unknown_age.observation is None


def test_retry_that_would_start_within_the_margin_before_the_deadline_lands_on_it() -> None:
    # The rate-limited delay is 1 s; a deadline 1.5 s away leaves it 0.5 s before the deadline,
    # too close for the call to be sure of reaching upstream in time.
    deadline = NOW + DEADLINE_MARGIN + timedelta(seconds=0.5)
    decision = decide_after_poll(TaskSnapshot(5, deadline), RATE_LIMITED, NOW, POLICY, 0.5)
    assert decision.next_poll_at == deadline
    roomy = NOW + DEADLINE_MARGIN + timedelta(seconds=1)
    decision = decide_after_poll(TaskSnapshot(5, roomy), RATE_LIMITED, NOW, POLICY, 0.5)
    assert decision.next_poll_at == NOW + timedelta(seconds=1) == last_call_start(roomy)


@pytest.mark.parametrize("answer", [PENDING, TRANSIENT, TIMEOUT, RATE_LIMITED, ACCOUNT])
@pytest.mark.parametrize("late_by", [timedelta(0), timedelta(seconds=1)])
def test_non_final_answer_at_or_after_deadline_expires(answer: Outcome, late_by: timedelta) -> None:
    decision = decide_after_poll(TaskSnapshot(4, NOW - late_by), answer, NOW, POLICY, 0.5)
    assert decision.kind is DecisionKind.EXPIRE
    assert decision.state == "expired"
    assert decision.next_poll_at is None
    assert decision.completed_at == NOW
    assert decision.poll_count == 5


def test_result_arriving_after_the_deadline_is_kept() -> None:
    decision = decide_after_poll(TaskSnapshot(4, NOW), COMPLETED, NOW, POLICY, 0.5)
    assert decision.kind is DecisionKind.COMPLETE


def test_rejection_after_the_deadline_still_fails() -> None:
    decision = decide_after_poll(TaskSnapshot(4, NOW), REJECTED, NOW, POLICY, 0.5)
    assert decision.kind is DecisionKind.FAIL


def test_expire_decision_without_a_call_keeps_poll_count() -> None:
    decision = expire_decision(7, NOW)
    assert (decision.kind, decision.state, decision.poll_count) == (
        DecisionKind.EXPIRE,
        "expired",
        7,
    )
    assert decision.last_error is None


outcomes = st.sampled_from(
    [COMPLETED, PENDING, REJECTED, RATE_LIMITED, ACCOUNT, TRANSIENT, TIMEOUT]
)
retry_afters = st.one_of(st.none(), st.floats(min_value=0, max_value=3600))


@given(
    outcomes,
    retry_afters,
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=-10, max_value=200_000),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.floats(min_value=0.01, max_value=100),
    st.floats(min_value=1, max_value=1000),
)
def test_next_poll_is_never_past_the_deadline_nor_in_the_past(
    answer: Outcome,
    retry_after: float | None,
    polls: int,
    seconds_left: float,
    rand: float,
    initial: float,
    span: float,
) -> None:
    if answer.kind is OutcomeKind.RATE_LIMITED:
        answer = outcome(OutcomeKind.RATE_LIMITED, "RATE_LIMIT_EXCEEDED", retry_after_s=retry_after)
    policy = PollPolicy(BackoffPolicy(initial, initial * span))
    deadline = NOW + timedelta(seconds=seconds_left)
    decision = decide_after_poll(TaskSnapshot(polls, deadline), answer, NOW, policy, rand)
    assert decision.poll_count == polls + 1
    if decision.is_final:
        assert decision.next_poll_at is None
        assert decision.completed_at == NOW
    else:
        assert decision.next_poll_at is not None
        assert NOW < decision.next_poll_at <= deadline
        # Either a call that starts in time, or the deadline itself (no call: it expires).
        assert decision.next_poll_at == deadline or (
            decision.next_poll_at <= last_call_start(deadline)
        )
        if answer.kind in (OutcomeKind.PENDING, OutcomeKind.TRANSIENT):
            delay = (decision.next_poll_at - NOW).total_seconds()
            # Moved to the deadline out of the margin, a wait may exceed the schedule's by it.
            slack = DEADLINE_MARGIN.total_seconds() if decision.next_poll_at == deadline else 0
            assert delay <= policy.backoff.max_s + slack + 1e-6
            assert delay >= min(policy.backoff.initial_s, seconds_left) - 1e-6


# --- re-checks (service/domain/rechecks.py) ----------------------------------------------------

RECHECK_ONCE = RecheckPolicy(frozenset({Verdict.RETRY}), after_s=600, max_rechecks=1)
TTL_POLICY = PollPolicy(BackoffPolicy(initial_s=2.0, max_s=300.0), task_ttl_s=3600.0)


def answered(status: str) -> Outcome:
    return outcome(OutcomeKind.COMPLETED, "OK", result=PhoneResult("0062****", status))


def test_an_answer_the_recheck_names_waits_for_its_recheck_with_its_result() -> None:
    task = TaskSnapshot(2, FAR, submitted_at=NOW - timedelta(seconds=30), recheck=RECHECK_ONCE)
    decision = decide_after_poll(task, answered("temp_unavailable"), NOW, TTL_POLICY, rand=0.5)
    assert decision.kind is DecisionKind.RECHECK
    assert decision.state == "pending"
    assert not decision.is_final
    assert decision.poll_count == 3
    assert decision.next_poll_at is None
    assert decision.completed_at is None
    assert decision.result == PhoneResult("0062****", "temp_unavailable")
    assert decision.upstream_request_id == RID
    assert decision.recheck_at == NOW + timedelta(seconds=600)
    assert decision.expires_at == NOW + timedelta(seconds=600 + 3600)
    # The answer arrived: the completion estimate learns from it all the same.
    assert decision.observation is not None


@pytest.mark.parametrize(
    ("status", "done"), [("ring", 0), ("empty", 0), ("temp_unavailable", 1), ("weird", 0)]
)
def test_an_answer_with_no_recheck_left_completes_the_task(status: str, done: int) -> None:
    task = TaskSnapshot(0, FAR, recheck=RECHECK_ONCE, rechecks_done=done)
    decision = decide_after_poll(task, answered(status), NOW, TTL_POLICY, rand=0.5)
    assert decision.kind is DecisionKind.COMPLETE
    assert decision.recheck_at is None
    assert decision.expires_at is None


def test_an_answer_after_the_deadline_is_still_rechecked() -> None:
    task = TaskSnapshot(0, NOW - timedelta(seconds=1), recheck=RECHECK_ONCE)
    decision = decide_after_poll(task, answered("line_abnormal"), NOW, TTL_POLICY, rand=0.5)
    assert decision.kind is DecisionKind.RECHECK


def test_a_rechecks_polls_step_as_a_new_checks_do() -> None:
    fresh = TaskSnapshot(0, FAR, calls_before=1)
    rechecked = TaskSnapshot(7, FAR, calls_before=1, earlier_polls=7, rechecks_done=1)
    first = decide_after_poll(fresh, PENDING, NOW, POLICY, rand=0.5)
    again = decide_after_poll(rechecked, PENDING, NOW, POLICY, rand=0.5)
    assert again.next_poll_at == first.next_poll_at
    assert again.poll_count == 8  # poll_count still counts every poll of the task
