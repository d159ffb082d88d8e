"""A check job's `estimated_finish_at` (service.domain.job_estimate): what remains over the rate,
plus the time an answer takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.job_estimate import HORIZON_S, available_item_rate, estimated_finish_at
from service.domain.job_lifecycle import JobStatus
from service.domain.states import JobState, PausedReason

NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
RUNNING = JobStatus(JobState.RUNNING)


def estimate(**overrides: Any) -> datetime | None:
    values: dict[str, Any] = {
        "now": NOW,
        "status": RUNNING,
        "left_to_submit": 900,
        "pending": 100,
        "observed_item_rate": 90.0,
        "available_item_rate": 50.0,
        "answer_time_s": 4.0,
    }
    values.update(overrides)
    return estimated_finish_at(**values)


def test_finish_is_what_is_left_over_the_observed_rate_plus_an_answers_time() -> None:
    assert estimate() == NOW + timedelta(seconds=900 / 90 + 4)


def test_without_an_observed_rate_the_available_rate_is_used() -> None:
    assert estimate(observed_item_rate=None) == NOW + timedelta(seconds=900 / 50 + 4)
    assert estimate(observed_item_rate=0.0) == NOW + timedelta(seconds=900 / 50 + 4)


def test_a_queued_job_is_estimated_at_the_available_rate() -> None:
    assert estimate(status=JobStatus(JobState.QUEUED), observed_item_rate=None) == NOW + timedelta(
        seconds=22
    )


@pytest.mark.parametrize(
    "status",
    [
        JobStatus(JobState.DRAFT),
        JobStatus(JobState.PAUSED, PausedReason.CLIENT),
        JobStatus(JobState.PAUSED, PausedReason.BUDGET),
        JobStatus(JobState.PAUSED, PausedReason.UPSTREAM),
        JobStatus(JobState.COMPLETED),
        JobStatus(JobState.CANCELLED),
    ],
)
def test_only_a_queued_or_running_job_has_an_estimate(status: JobStatus) -> None:
    assert estimate(status=status) is None


def test_with_nothing_left_to_submit_only_the_answer_time_remains() -> None:
    assert estimate(
        left_to_submit=0, pending=1, observed_item_rate=None, available_item_rate=0.0
    ) == (NOW + timedelta(seconds=4))


def test_with_nothing_left_at_all_it_is_now() -> None:
    assert estimate(left_to_submit=0, pending=0) == NOW


def test_no_rate_at_all_means_no_estimate() -> None:
    assert estimate(observed_item_rate=None, available_item_rate=0.0) is None


def test_a_rate_so_small_that_the_end_is_past_a_year_means_no_estimate() -> None:
    assert estimate(observed_item_rate=1e-300) is None
    assert estimate(left_to_submit=1, observed_item_rate=1 / (HORIZON_S - 10), answer_time_s=0) == (
        NOW + timedelta(seconds=HORIZON_S - 10)
    )


def test_the_estimate_is_rounded_up_to_the_whole_second() -> None:
    assert estimate(left_to_submit=1, observed_item_rate=4.0, answer_time_s=0.0) == NOW + timedelta(
        seconds=1
    )
    assert estimate(
        now=NOW + timedelta(microseconds=1), left_to_submit=0, pending=0
    ) == NOW + timedelta(seconds=1)


@pytest.mark.parametrize(
    "overrides",
    [
        {"left_to_submit": -1},
        {"pending": -1},
        {"answer_time_s": -1.0},
        {"answer_time_s": float("nan")},
    ],
)
def test_impossible_inputs_are_a_bug(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="negative"):
        estimate(**overrides)


@given(
    left=st.integers(0, 100_000),
    pending=st.integers(0, 100_000),
    rate=st.floats(0.01, 1000.0),
    answer_s=st.floats(0.0, 3600.0),
    extra=st.integers(1, 1000),
)
def test_the_estimate_is_never_before_now_and_grows_with_what_is_left(
    left: int, pending: int, rate: float, answer_s: float, extra: int
) -> None:
    first = estimate(
        left_to_submit=left, pending=pending, observed_item_rate=rate, answer_time_s=answer_s
    )
    more = estimate(
        left_to_submit=left + extra,
        pending=pending,
        observed_item_rate=rate,
        answer_time_s=answer_s,
    )
    assert first is not None
    assert more is not None
    assert NOW <= first <= more
    assert first.microsecond == 0


@given(rate=st.floats(0.01, 1000.0), faster=st.floats(1.0, 10.0))
def test_a_faster_rate_never_finishes_later(rate: float, faster: float) -> None:
    slow = estimate(observed_item_rate=rate)
    fast = estimate(observed_item_rate=rate * faster)
    assert slow is not None
    assert fast is not None
    assert fast <= slow


def test_the_available_rate_is_what_interactive_work_leaves_shared_by_jobs_per_call() -> None:
    assert available_item_rate(
        ceiling_per_s=200.0, interactive_per_s=20.0, active_jobs=2, calls_per_item=2.25
    ) == pytest.approx(40.0)


def test_interactive_work_above_the_ceiling_leaves_no_rate() -> None:
    assert (
        available_item_rate(
            ceiling_per_s=100.0, interactive_per_s=150.0, active_jobs=1, calls_per_item=2.0
        )
        == 0.0
    )


def test_no_active_job_counts_as_one() -> None:
    assert available_item_rate(
        ceiling_per_s=100.0, interactive_per_s=0.0, active_jobs=0, calls_per_item=2.0
    ) == pytest.approx(50.0)


def test_calls_per_item_must_be_positive() -> None:
    with pytest.raises(ValueError, match="calls_per_item"):
        available_item_rate(
            ceiling_per_s=1.0, interactive_per_s=0.0, active_jobs=1, calls_per_item=0
        )
