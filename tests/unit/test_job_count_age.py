"""How long a running job's count is shown again (service/domain/job_count_age.py): ten times as
long as it took to count, never under a second nor over ten."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.job_count_age import (
    COUNT_TIME_MULTIPLE,
    MAX_AGE_S,
    MIN_AGE_S,
    shown_for_s,
)


def test_a_count_is_shown_ten_times_as_long_as_it_took() -> None:
    # 230 ms: a 100,000-item job on this machine (bench/jobs.py part v).
    assert shown_for_s(0.23) == pytest.approx(2.3)
    assert shown_for_s(0.5) == pytest.approx(5.0)


def test_a_quick_count_is_still_shown_a_second_and_a_slow_one_at_most_ten() -> None:
    assert shown_for_s(0.0) == MIN_AGE_S == 1.0
    assert shown_for_s(0.06) == 1.0
    assert shown_for_s(3.0) == MAX_AGE_S == 10.0


@given(st.floats(min_value=0.0, max_value=3600.0), st.floats(min_value=0.0, max_value=3600.0))
def test_a_slower_count_is_never_shown_for_less(first: float, second: float) -> None:
    quick, slow = sorted((first, second))
    assert MIN_AGE_S <= shown_for_s(quick) <= shown_for_s(slow) <= MAX_AGE_S


@given(st.floats(min_value=0.0, max_value=MAX_AGE_S / COUNT_TIME_MULTIPLE))
def test_counting_takes_at_most_a_tenth_of_the_time_until_the_next_count(counting_s: float) -> None:
    assert counting_s <= shown_for_s(counting_s) / COUNT_TIME_MULTIPLE + 1e-12
