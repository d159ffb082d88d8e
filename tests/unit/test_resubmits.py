"""What the answer to a re-submit means for its task (service/domain/resubmits.py): every kind of
submit answer, with the count of re-checks made against every `max`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.answers import PhoneResult
from service.domain.checks import SubmitKind, SubmitOutcome
from service.domain.rechecks import MAX_MAX, MAX_MIN, RecheckPolicy
from service.domain.resubmits import (
    ResubmitDecision,
    ResubmitKind,
    ResubmitTiming,
    decide_after_resubmit,
)
from service.domain.verdicts import Verdict, verdict_of

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
TIMING = ResubmitTiming(first_poll_s=2.0, ttl_s=86_400.0, retry_s=2.0)
ONCE = RecheckPolicy(frozenset({Verdict.RETRY}), 600, 1)
THRICE = RecheckPolicy(frozenset({Verdict.RETRY}), 600, 3)


def outcome(kind: SubmitKind, **extra: object) -> SubmitOutcome:
    return SubmitOutcome(kind, f"{kind.value}-code", f"{kind.value} message", "TID9", **extra)  # type: ignore[arg-type]


def answered(status: str) -> SubmitOutcome:
    return outcome(SubmitKind.FINISHED, result=PhoneResult("5255****", status))


PENDING = outcome(SubmitKind.PENDING, task_id="T-2")


def decide(answer: SubmitOutcome, policy: RecheckPolicy = ONCE, done: int = 0) -> ResubmitDecision:
    verdict = None if answer.result is None else verdict_of(answer.result.phone_status)
    return decide_after_resubmit(answer, verdict, policy, done, NOW, TIMING)


def test_a_taken_recheck_polls_its_own_upstream_task_with_a_deadline_of_its_own() -> None:
    decision = decide(PENDING)
    assert decision.kind is ResubmitKind.POLL
    assert decision.upstream_task_id == "T-2"
    assert decision.next_poll_at == NOW + timedelta(seconds=2)
    assert decision.expires_at == NOW + timedelta(days=1)
    assert decision.upstream_request_id == "TID9"
    assert not decision.ends_task


@given(max_rechecks=st.integers(MAX_MIN, MAX_MAX), done=st.integers(0, MAX_MAX - 1))
def test_the_number_is_kept_only_while_another_recheck_may_follow(
    max_rechecks: int, done: int
) -> None:
    policy = RecheckPolicy(frozenset({Verdict.RETRY}), 600, max_rechecks)
    assert decide(PENDING, policy, done).keep_number is (done + 1 < max_rechecks)


def test_an_answer_at_once_that_asks_again_waits_for_the_next_recheck() -> None:
    decision = decide(answered("temp_unavailable"), THRICE, done=1)
    assert decision.kind is ResubmitKind.ANSWERED
    assert decision.result == PhoneResult("5255****", "temp_unavailable")
    assert decision.recheck_at == NOW + timedelta(seconds=600)
    assert decision.expires_at == NOW + timedelta(seconds=600) + timedelta(days=1)
    assert decision.keep_number
    assert not decision.ends_task


@pytest.mark.parametrize(
    ("status", "policy", "done"),
    [("ring", THRICE, 0), ("temp_unavailable", ONCE, 0), ("line_abnormal", THRICE, 2)],
)
def test_an_answer_at_once_that_is_the_last_ends_the_task(
    status: str, policy: RecheckPolicy, done: int
) -> None:
    decision = decide(answered(status), policy, done)
    assert decision.kind is ResubmitKind.ANSWERED
    assert decision.recheck_at is None
    assert decision.expires_at is None
    assert not decision.keep_number
    assert decision.ends_task


def test_a_refused_recheck_ends_the_task_with_its_last_answer() -> None:
    decision = decide(outcome(SubmitKind.REJECTED), THRICE)
    assert decision.kind is ResubmitKind.GIVE_UP
    assert decision.ends_task
    assert not decision.outcome_unknown
    assert decision.last_error is not None
    assert decision.last_error["code"] == "rejected-code"
    assert "rejected message" in decision.last_error["message"]
    assert not decision.keep_number


def test_a_recheck_whose_outcome_is_unknown_is_never_made_again() -> None:
    decision = decide(outcome(SubmitKind.UNKNOWN), THRICE)
    assert decision.kind is ResubmitKind.GIVE_UP
    assert decision.outcome_unknown
    assert decision.last_error is not None
    assert decision.last_error["code"] == "SUBMIT_OUTCOME_UNKNOWN"
    assert decision.last_error["at"] == NOW.isoformat()
    assert not decision.keep_number


@pytest.mark.parametrize(
    "kind", [SubmitKind.ACCOUNT_PROBLEM, SubmitKind.RATE_LIMITED, SubmitKind.UNAVAILABLE]
)
def test_a_recheck_that_surely_reached_nothing_is_made_later(kind: SubmitKind) -> None:
    decision = decide(outcome(kind))
    assert decision.kind is ResubmitKind.LATER
    assert decision.retry_at == NOW + timedelta(seconds=2)
    assert decision.keep_number
    assert not decision.ends_task


def test_retry_after_lengthens_the_wait() -> None:
    decision = decide(outcome(SubmitKind.RATE_LIMITED, retry_after_s=30.0))
    assert decision.retry_at == NOW + timedelta(seconds=30)


@pytest.mark.parametrize("kind", list(SubmitKind))
def test_every_submit_answer_has_a_meaning_and_its_code(kind: SubmitKind) -> None:
    extra: dict[str, object] = {}
    if kind is SubmitKind.PENDING:
        extra["task_id"] = "T-2"
    if kind is SubmitKind.FINISHED:
        extra["result"] = PhoneResult("5255****", "busy")
    decision = decide(outcome(kind, **extra))
    assert decision.code == f"{kind.value}-code"
    # Exactly the answers that may have taken the check upstream leave the number behind.
    assert decision.kind is not ResubmitKind.LATER or kind in (
        SubmitKind.ACCOUNT_PROBLEM,
        SubmitKind.RATE_LIMITED,
        SubmitKind.UNAVAILABLE,
    )
