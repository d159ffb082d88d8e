"""The poll schedule: backoff, and the adaptive rule on a learnt completion-time estimate."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.backoff import BackoffPolicy, next_poll_delay
from service.domain.completion import BIN_COUNT, EDGES, CompletionEstimate
from service.domain.schedule import (
    PollSchedule,
    SchedulePolicy,
    adaptive_delay,
    adaptive_next_age,
    finish_probability,
    next_delay,
    target_probability,
)
from tests.support.estimates import uniform_estimate

BACKOFF = BackoffPolicy(initial_s=2.0, max_s=300.0)
ADAPTIVE = SchedulePolicy(PollSchedule.ADAPTIVE, target_p=0.5, min_completions=50.0)
# Uniform answers over (0, END]: F(t) = t / END, so the rule is t = p·END + (1 - p)·a exactly.
UNIFORM, END = uniform_estimate(up_to_bin=40)


def test_the_call_budget_sets_the_target_probability() -> None:
    assert target_probability(2.0) == 1.0
    assert target_probability(2.5) == pytest.approx(2 / 3)
    assert target_probability(5.0) == 0.25
    with pytest.raises(ValueError, match="at least 2"):
        target_probability(1.5)


@pytest.mark.parametrize(("age_fraction", "p"), [(0.0, 0.5), (0.2, 0.5), (0.5, 0.25), (0.9, 0.5)])
def test_on_uniform_answers_the_next_poll_is_exactly_where_the_target_is_reached(
    age_fraction: float, p: float
) -> None:
    age = age_fraction * END
    expected = p * END + (1 - p) * age
    assert adaptive_next_age(UNIFORM, age, p) == pytest.approx(expected)
    wide = BackoffPolicy(initial_s=0.001, max_s=LARGE)
    assert adaptive_delay(UNIFORM, age, p, wide) == pytest.approx(expected - age)
    # And the conditional probability of an answer in between is the target itself.
    assert finish_probability(UNIFORM, age, expected) == pytest.approx(p)


LARGE = 1e9


def test_on_two_clusters_polls_wait_for_the_second_cluster_after_the_first() -> None:
    weights = [0.0] * BIN_COUNT
    fast = next(i for i in range(BIN_COUNT) if EDGES[i] < 5.0 <= EDGES[i + 1])
    slow = next(i for i in range(BIN_COUNT) if EDGES[i] < 60.0 <= EDGES[i + 1])
    weights[fast], weights[slow] = 700.0, 300.0
    estimate = CompletionEstimate(tuple(weights))
    wide = BackoffPolicy(initial_s=0.001, max_s=LARGE)
    # From age 0 with p = 0.5: half of the first cluster's bin (it holds 70%): 5/7 of the way in.
    first = adaptive_next_age(estimate, 0.0, 0.5)
    assert first == pytest.approx(EDGES[fast] + (0.5 / 0.7) * (EDGES[fast + 1] - EDGES[fast]))
    # Past the first cluster, nothing is expected until the second: no poll in the gap.
    after_first = EDGES[fast + 1] + 1.0
    second = after_first + adaptive_delay(estimate, after_first, 0.5, wide)
    assert second == pytest.approx((EDGES[slow] + EDGES[slow + 1]) / 2)


def test_past_every_observed_answer_the_age_doubles_as_backoff_would() -> None:
    # Early on only fast answers are known; a slower upstream must still be found.
    assert adaptive_next_age(UNIFORM, END * 2, 0.5) == END * 4
    minute, end = uniform_estimate(up_to_bin=25)  # answers within about 68 s
    assert adaptive_delay(minute, end + 30.0, 0.5, BACKOFF) == pytest.approx(end + 30.0)
    assert adaptive_delay(minute, 400.0, 0.5, BACKOFF) == BACKOFF.max_s
    # Less than one completion known later, but far later: the next poll goes there at once.
    weights = [0.0] * BIN_COUNT
    weights[10], weights[40] = 100.0, 0.5
    stray = CompletionEstimate(tuple(weights))
    assert adaptive_next_age(stray, EDGES[11], 0.5) == EDGES[41]


def test_the_draw_dithers_the_delay_down_by_at_most_a_tenth() -> None:
    wide = BackoffPolicy(initial_s=0.001, max_s=LARGE)
    full = adaptive_delay(UNIFORM, 0.0, 0.5, wide, rand=0.0)
    assert full == pytest.approx(END / 2)
    assert adaptive_delay(UNIFORM, 0.0, 0.5, wide, rand=0.5) == pytest.approx(0.95 * full)
    assert adaptive_delay(UNIFORM, 0.0, 0.5, wide, rand=0.999999) == pytest.approx(0.9 * full)


def test_delays_are_clamped_to_the_initial_and_max_delays() -> None:
    small, _end = uniform_estimate(up_to_bin=5)  # every answer within a fraction of a second
    assert adaptive_delay(small, 0.0, 0.5, BACKOFF) == BACKOFF.initial_s
    big, _ = uniform_estimate(up_to_bin=60)  # answers spread over days
    assert adaptive_delay(big, 0.0, 0.5, BACKOFF) == BACKOFF.max_s


def test_a_cold_estimate_falls_back_to_backoff() -> None:
    cold, _ = uniform_estimate(up_to_bin=40, total=49.0)
    for polls in range(1, 10):
        assert next_delay(ADAPTIVE, BACKOFF, cold, polls_made=polls, age_s=3.0, rand=0.5) == (
            next_poll_delay(BACKOFF, polls, 0.5)
        )
    assert next_delay(ADAPTIVE, BACKOFF, None, polls_made=2, age_s=3.0, rand=0.5) == 4.0


def test_the_backoff_schedule_ignores_a_warm_estimate() -> None:
    chosen = SchedulePolicy(PollSchedule.BACKOFF)
    assert next_delay(chosen, BACKOFF, UNIFORM, polls_made=3, age_s=9.0, rand=0.5) == 8.0


def test_a_warm_estimate_with_the_adaptive_schedule_uses_the_rule() -> None:
    delay = next_delay(ADAPTIVE, BACKOFF, UNIFORM, polls_made=3, age_s=0.0, rand=0.5)
    assert delay == adaptive_delay(UNIFORM, 0.0, 0.5, BACKOFF, rand=0.5)


def test_nothing_known_means_no_finish_probability() -> None:
    assert finish_probability(None, 0.0, 10.0) is None
    assert finish_probability(CompletionEstimate.empty(), 0.0, 10.0) is None
    assert finish_probability(UNIFORM, END * 2, END * 3) == 0.0


# --- properties -----------------------------------------------------------------------------

estimates = (
    st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e4)),
        min_size=BIN_COUNT,
        max_size=BIN_COUNT,
    )
    .filter(lambda ws: math.fsum(ws) > 1.0)
    .map(lambda ws: CompletionEstimate(tuple(ws)))
)
ages = st.floats(min_value=0.0, max_value=2e6, allow_nan=False)
targets = st.floats(min_value=0.01, max_value=1.0)
backoffs = st.builds(
    lambda initial, span: BackoffPolicy(initial, initial * span),
    st.floats(min_value=0.01, max_value=100.0),
    st.floats(min_value=1.0, max_value=1000.0),
)


draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(estimates, ages, ages, targets, backoffs, draws)
def test_the_next_poll_age_is_monotone_in_the_task_age(
    estimate: CompletionEstimate, a: float, b: float, p: float, backoff: BackoffPolicy, rand: float
) -> None:
    young, old = sorted((a, b))
    assert young + adaptive_delay(estimate, young, p, backoff, rand) <= (
        old + adaptive_delay(estimate, old, p, backoff, rand) + 1e-6 * max(1.0, old)
    )


@given(estimates, ages, targets, backoffs, draws)
def test_the_delay_is_bounded_and_deterministic(
    estimate: CompletionEstimate, age: float, p: float, backoff: BackoffPolicy, rand: float
) -> None:
    delay = adaptive_delay(estimate, age, p, backoff, rand)
    assert backoff.initial_s <= delay <= backoff.max_s
    assert delay == adaptive_delay(CompletionEstimate(estimate.weights), age, p, backoff, rand)


@given(estimates, ages, targets)
def test_the_next_poll_reaches_the_target_and_not_much_more(
    estimate: CompletionEstimate, age: float, p: float
) -> None:
    wide = BackoffPolicy(1e-9, 1e12)
    next_age = age + adaptive_delay(estimate, age, p, wide)
    known = estimate.total * (1 - estimate.cdf(age)) >= 1.0
    if known and next_age > age + 1e-9:
        reached = finish_probability(estimate, age, next_age)
        assert reached is not None
        assert reached == pytest.approx(p, abs=1e-6) or reached >= p
