"""What a poll's decision takes from the schedule and gives to the estimate: the adaptive delay
counted from `submitted_at`, the PENDING mark, the chance of an answer, the completion interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.answers import Outcome, OutcomeKind, PhoneResult
from service.domain.backoff import BackoffPolicy
from service.domain.completion import Observation
from service.domain.polling import DecisionKind, PollPolicy, TaskSnapshot, decide_after_poll
from service.domain.schedule import PollSchedule, SchedulePolicy, adaptive_delay
from tests.support.estimates import uniform_estimate

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BACKOFF = BackoffPolicy(initial_s=2.0, max_s=300.0)
ADAPTIVE = PollPolicy(BACKOFF, schedule=SchedulePolicy(PollSchedule.ADAPTIVE, target_p=0.5))
PENDING = Outcome(OutcomeKind.PENDING, "PENDING", "in progress")
TRANSIENT = Outcome(OutcomeKind.TRANSIENT, "INTERNAL_ERROR", "boom")
COMPLETED = Outcome(OutcomeKind.COMPLETED, "OK", "ok", result=PhoneResult("52**", "ring"))
ESTIMATE, END = uniform_estimate(up_to_bin=25)  # END is about 68 s


def task(age_s: float, *, polls: int = 1, pending_age_s: float | None = None) -> TaskSnapshot:
    submitted = NOW - timedelta(seconds=age_s)
    return TaskSnapshot(
        poll_count=polls,
        expires_at=submitted + timedelta(days=1),
        submitted_at=submitted,
        last_pending_at=None
        if pending_age_s is None
        else submitted + timedelta(seconds=pending_age_s),
    )


# A draw of 0 leaves the delay undithered.
def test_a_pending_answer_schedules_from_the_tasks_age_and_marks_it_pending() -> None:
    decision = decide_after_poll(task(10.0), PENDING, NOW, ADAPTIVE, 0.0, ESTIMATE)
    assert decision.kind is DecisionKind.RETRY
    delay = adaptive_delay(ESTIMATE, 10.0, 0.5, BACKOFF)
    assert decision.next_poll_at == NOW + timedelta(seconds=delay)
    assert decision.last_pending_at == NOW
    assert decision.finish_p == pytest.approx(0.5)


def test_a_task_registered_late_is_not_polled_as_if_new() -> None:
    young = decide_after_poll(task(1.0), PENDING, NOW, ADAPTIVE, 0.0, ESTIMATE)
    late = decide_after_poll(task(60.0), PENDING, NOW, ADAPTIVE, 0.0, ESTIMATE)
    assert young.next_poll_at is not None
    assert late.next_poll_at is not None
    # Uniform answers: from age a the next poll is at (END + a) / 2, so the delays differ.
    assert (young.next_poll_at - NOW).total_seconds() == pytest.approx((END - 1.0) / 2)
    assert (late.next_poll_at - NOW).total_seconds() == pytest.approx((END - 60.0) / 2)


def test_a_transient_fault_keeps_the_last_pending_mark() -> None:
    decision = decide_after_poll(
        task(30.0, pending_age_s=20.0), TRANSIENT, NOW, ADAPTIVE, 0.5, ESTIMATE
    )
    assert decision.last_pending_at is None  # the column keeps its value
    # The chance counts from the last PENDING answer (age 20), not from this poll.
    assert decision.finish_p is not None
    assert decision.finish_p > 0.5


def test_without_an_estimate_the_adaptive_schedule_backs_off() -> None:
    decision = decide_after_poll(task(10.0, polls=1), PENDING, NOW, ADAPTIVE, 0.5, None)
    assert decision.next_poll_at == NOW + timedelta(seconds=4.0)
    assert decision.finish_p is None


def test_the_next_poll_never_passes_the_deadline() -> None:
    snapshot = TaskSnapshot(1, NOW + timedelta(seconds=3), submitted_at=NOW)
    decision = decide_after_poll(snapshot, PENDING, NOW, ADAPTIVE, 0.0, ESTIMATE)
    assert decision.next_poll_at == snapshot.expires_at


def test_a_completion_reports_the_interval_its_answer_arrived_in() -> None:
    decision = decide_after_poll(
        task(25.0, pending_age_s=18.0), COMPLETED, NOW, ADAPTIVE, 0.5, ESTIMATE
    )
    assert decision.kind is DecisionKind.COMPLETE
    assert decision.observation == Observation(18.0, 25.0)
    first_poll = decide_after_poll(task(3.0, polls=0), COMPLETED, NOW, ADAPTIVE, 0.5, None)
    assert first_poll.observation == Observation(0.0, 3.0)


def test_a_task_of_unknown_age_teaches_nothing() -> None:
    snapshot = TaskSnapshot(0, NOW + timedelta(hours=1))
    assert decide_after_poll(snapshot, COMPLETED, NOW, ADAPTIVE, 0.5, ESTIMATE).observation is None
