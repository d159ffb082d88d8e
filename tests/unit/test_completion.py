"""The completion-time estimate: its distribution functions, interval-censored observations,
decay and merging."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.completion import (
    BIN_COUNT,
    EDGES,
    LAST_EDGE_S,
    CompletionEstimate,
    Observation,
    apportion,
    completion_interval,
    decay_factor,
    not_answered_by,
)
from tests.support.estimates import uniform_estimate

# Empty bins, or weights that float arithmetic can resolve (a decayed estimate this light is cold).
weights = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e6)),
    min_size=BIN_COUNT,
    max_size=BIN_COUNT,
).filter(lambda ws: math.fsum(ws) > 0)
ages = st.floats(min_value=0.0, max_value=LAST_EDGE_S * 1.1, allow_nan=False)


def test_bins_are_log_spaced_from_a_quarter_second_to_a_week() -> None:
    assert len(EDGES) == BIN_COUNT + 1
    assert EDGES[0] == 0.0
    assert EDGES[1] == 0.25
    assert EDGES[-1] == LAST_EDGE_S
    ratios = {round(EDGES[i + 1] / EDGES[i], 9) for i in range(1, BIN_COUNT)}
    assert len(ratios) == 1


def test_a_uniform_estimate_has_a_linear_cdf_and_exact_quantiles() -> None:
    estimate, end = uniform_estimate(up_to_bin=30)
    for age in (0.0, end / 7, end / 2, end * 0.99, end):
        assert estimate.cdf(age) == pytest.approx(age / end)
    for q in (0.1, 0.5, 0.9, 1.0):
        assert estimate.quantile(q) == pytest.approx(q * end)
    assert estimate.cdf(end * 2) == 1.0
    assert estimate.support_end() == pytest.approx(end)


def test_an_empty_estimate_knows_nothing() -> None:
    empty = CompletionEstimate.empty()
    assert empty.total == 0
    assert empty.cdf(10.0) == 0.0
    with pytest.raises(ValueError, match="empty"):
        empty.quantile(0.5)


@given(weights, ages, ages)
def test_the_cdf_is_monotone_and_within_zero_and_one(ws: list[float], a: float, b: float) -> None:
    estimate = CompletionEstimate(tuple(ws))
    low, high = sorted((a, b))
    assert 0.0 <= estimate.cdf(low) <= estimate.cdf(high) <= 1.0


@given(weights, st.floats(min_value=0.001, max_value=1.0))
def test_the_quantile_inverts_the_cdf(ws: list[float], q: float) -> None:
    estimate = CompletionEstimate(tuple(ws))
    age = estimate.quantile(q)
    assert estimate.cdf(age) == pytest.approx(q, abs=1e-9)


def test_stored_weights_of_another_length_are_padded_or_cut() -> None:
    assert CompletionEstimate.of([1.0, 2.0]).weights[:3] == (1.0, 2.0, 0.0)
    assert len(CompletionEstimate.of([1.0] * (BIN_COUNT + 5)).weights) == BIN_COUNT


def test_negative_or_missing_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="bins"):
        CompletionEstimate((1.0,))
    with pytest.raises(ValueError, match="negative"):
        CompletionEstimate((-1.0, *(0.0,) * (BIN_COUNT - 1)))


# --- observations --------------------------------------------------------------------------


def test_the_interval_runs_from_the_last_pending_answer_to_the_ok_answer() -> None:
    assert completion_interval(100.0, 112.0, 130.0) == Observation(12.0, 30.0)
    assert completion_interval(100.0, None, 103.0) == Observation(0.0, 3.0)
    # A clock that ran backwards never makes a negative or inverted interval.
    assert completion_interval(100.0, 99.0, 98.0) == Observation(0.0, 0.0)


def test_a_cold_estimate_spreads_an_observation_evenly_in_log_time() -> None:
    # (EDGES[10], EDGES[12]]: two whole bins of equal log width, half each.
    increments = apportion(CompletionEstimate.empty(), [Observation(EDGES[10], EDGES[12])])
    assert increments[10] == pytest.approx(0.5)
    assert increments[11] == pytest.approx(0.5)
    assert math.fsum(increments) == pytest.approx(1.0)


def test_a_warm_estimate_puts_a_wide_interval_where_answers_are_known_to_arrive() -> None:
    known = [0.0] * BIN_COUNT
    known[20] = 1000.0
    increments = apportion(CompletionEstimate(tuple(known)), [Observation(EDGES[15], EDGES[25])])
    assert increments[20] > 0.99
    assert math.fsum(increments) == pytest.approx(1.0)


def test_a_point_observation_lands_in_its_bin() -> None:
    increments = apportion(CompletionEstimate.empty(), [Observation(7.0, 7.0)])
    index = next(i for i in range(BIN_COUNT) if EDGES[i] < 7.0 <= EDGES[i + 1])
    assert increments[index] == 1.0


def test_an_observation_past_the_last_edge_counts_in_the_last_bin() -> None:
    increments = apportion(
        CompletionEstimate.empty(), [Observation(LAST_EDGE_S * 2, LAST_EDGE_S * 3)]
    )
    assert increments[-1] == 1.0


@given(
    st.lists(st.tuples(ages, ages).map(lambda pair: Observation(*sorted(pair))), max_size=20),
    weights,
)
def test_each_observation_adds_exactly_one_unit_of_weight_inside_its_interval(
    observations: list[Observation], ws: list[float]
) -> None:
    increments = apportion(CompletionEstimate(tuple(ws)), observations)
    assert math.fsum(increments) == pytest.approx(len(observations))
    assert all(i >= 0 for i in increments)
    if len(observations) == 1 and observations[0].after_s < observations[0].by_s < LAST_EDGE_S:
        low, high = observations[0].after_s, observations[0].by_s
        for index, weight in enumerate(increments):
            if weight > 1e-12:
                assert EDGES[index] < high
                assert EDGES[index + 1] > low


# --- decay and merge ------------------------------------------------------------------------


def test_weight_halves_every_half_life() -> None:
    assert decay_factor(0.0, 3600.0) == 1.0
    assert decay_factor(3600.0, 3600.0) == pytest.approx(0.5)
    assert decay_factor(7200.0, 3600.0) == pytest.approx(0.25)
    assert decay_factor(-5.0, 3600.0) == 1.0
    with pytest.raises(ValueError, match="positive"):
        decay_factor(1.0, 0.0)


def test_the_estimate_follows_upstream_when_it_slows_down() -> None:
    fast = apportion(CompletionEstimate.empty(), [Observation(4.0, 5.0)] * 500)
    estimate = CompletionEstimate(fast)
    assert estimate.quantile(0.5) < 6.0
    # Four half-lives later, upstream takes about a minute: the new evidence dominates.
    slow = apportion(estimate, [Observation(55.0, 60.0)] * 500)
    estimate = estimate.decayed(4 * 3600.0, 3600.0).plus(slow)
    assert 50.0 < estimate.quantile(0.5) < 61.0
    assert estimate.total == pytest.approx(500 / 16 + 500)


@given(
    weights, weights, st.floats(min_value=0, max_value=1e5), st.floats(min_value=0, max_value=1e5)
)
def test_merging_is_order_free_and_decay_distributes_over_it(
    a: list[float], b: list[float], t1: float, t2: float
) -> None:
    x, y = CompletionEstimate(tuple(a)), CompletionEstimate(tuple(b))
    assert x.merged(y).weights == pytest.approx(y.merged(x).weights)
    # Decaying a merge is merging the decayed parts; decaying twice is decaying once by the sum.
    assert x.merged(y).decayed(t1, 600.0).weights == pytest.approx(
        x.decayed(t1, 600.0).merged(y.decayed(t1, 600.0)).weights
    )
    assert x.decayed(t1, 600.0).decayed(t2, 600.0).weights == pytest.approx(
        x.decayed(t1 + t2, 600.0).weights, rel=1e-6, abs=1e-300
    )


# --- right-censored observations: tasks that expire unanswered ------------------------------


def test_a_task_that_expires_unanswered_is_censored_at_its_last_pending_age() -> None:
    seen = not_answered_by(100.0, 130.0)
    assert seen == Observation(30.0, math.inf)
    assert seen.censored
    assert not Observation(30.0, 40.0).censored
    assert not_answered_by(100.0, 90.0) == Observation(0.0, math.inf)  # clock skew: age 0


def test_a_censored_observation_goes_where_later_answers_are_known_to_arrive() -> None:
    """The Turnbull step: its unit is spread over the bins past its age in proportion to what is
    known there, so it lengthens the tail it is in, and nothing before its age changes."""
    known = [0.0] * BIN_COUNT
    known[10], known[20], known[30] = 500.0, 300.0, 100.0
    increments = apportion(CompletionEstimate(tuple(known)), [not_answered_by(0.0, EDGES[25])])
    assert math.fsum(increments) == pytest.approx(1.0)
    assert math.fsum(increments[:25]) == 0.0
    # All but what the prior's pseudo-counts (0.05 a bin) claim of it.
    assert increments[30] > 0.97


def test_a_censored_observation_on_a_cold_estimate_spreads_over_every_later_bin() -> None:
    increments = apportion(CompletionEstimate.empty(), [not_answered_by(0.0, EDGES[40])])
    assert math.fsum(increments) == pytest.approx(1.0)
    assert math.fsum(increments[:40]) == 0.0
    assert all(share > 0 for share in increments[40:])
