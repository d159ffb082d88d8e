"""A subscription's run of failures (service/domain/endpoint_health.py): what ends it, what it
counts, and when it disables the subscription."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.domain.endpoint_health import (
    HEALTHY,
    AttemptFact,
    FailureRun,
    after_attempts,
    should_disable,
)

T0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
DAY = 86400.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def failed(seconds: float, exhausted: bool = False) -> AttemptFact:
    return AttemptFact(at(seconds), succeeded=False, exhausted_schedule=exhausted)


def succeeded(seconds: float) -> AttemptFact:
    return AttemptFact(at(seconds), succeeded=True)


def test_a_run_starts_at_the_first_failure_after_a_success_and_counts_each_failure() -> None:
    run = after_attempts(HEALTHY, [succeeded(0), failed(10), failed(20), failed(30)])
    assert run == FailureRun(
        last_success_at=at(0), failing_since=at(10), failures_in_row=3, schedule_exhausted=False
    )


def test_a_success_ends_the_run() -> None:
    failing = after_attempts(HEALTHY, [failed(10, exhausted=True), failed(20)])
    assert after_attempts(failing, [succeeded(30)]) == FailureRun(last_success_at=at(30))


def test_a_success_older_than_the_run_ends_nothing_but_is_remembered() -> None:
    # Another worker wrote the later failures first.
    failing = after_attempts(FailureRun(last_success_at=at(0)), [failed(20), failed(30)])
    late = after_attempts(failing, [succeeded(10)])
    assert late.failing_since == at(20)
    assert late.failures_in_row == 2
    assert late.last_success_at == at(10)


def test_the_attempts_of_one_write_back_count_in_time_order() -> None:
    run = after_attempts(HEALTHY, [failed(30), succeeded(20), failed(40)])
    assert (run.last_success_at, run.failing_since, run.failures_in_row) == (at(20), at(30), 2)


@given(st.dictionaries(st.integers(0, 1000), st.booleans(), max_size=30))
def test_one_write_back_or_one_at_a_time_in_order_give_the_same_run(
    attempts: dict[int, bool],
) -> None:
    facts = [AttemptFact(at(s), ok) for s, ok in sorted(attempts.items())]
    one_by_one = HEALTHY
    for fact in facts:
        one_by_one = after_attempts(one_by_one, [fact])
    assert after_attempts(HEALTHY, reversed(facts)) == one_by_one


def test_a_subscription_failing_for_the_window_with_a_schedule_used_up_is_disabled() -> None:
    run = after_attempts(HEALTHY, [failed(0), failed(100, exhausted=True)])
    assert not should_disable(run, at(5 * DAY - 1), 5 * DAY)
    assert should_disable(run, at(5 * DAY), 5 * DAY)


def test_without_a_whole_schedule_failed_the_window_alone_disables_nothing() -> None:
    run = after_attempts(HEALTHY, [failed(0), failed(6 * DAY)])
    assert not should_disable(run, at(6 * DAY), 5 * DAY)


def test_a_healthy_subscription_is_never_disabled() -> None:
    run = after_attempts(HEALTHY, [failed(0, exhausted=True), succeeded(10)])
    assert not should_disable(run, at(30 * DAY), 5 * DAY)
