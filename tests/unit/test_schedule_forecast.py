"""The forecast of a schedule on a known estimate, the lag target it chooses from, and the safety
net's cost: cases computed by hand on uniform answers, and properties on any estimate."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.backoff import BackoffPolicy
from service.domain.completion import BIN_COUNT, CompletionEstimate
from service.domain.schedule import (
    MEAN_DRAW,
    SAFETY_NET_BUDGET,
    SAFETY_NET_P,
    TARGET_CANDIDATES,
    PollSchedule,
    SchedulePolicy,
    adaptive_ages,
    adaptive_delay,
    effective_target_p,
    next_delay,
    target_p_for_lag,
)
from service.domain.schedule_forecast import (
    FORECAST_TAIL,
    fewest_calls_within,
    forecast,
    lag_quantile,
)
from tests.support.estimates import uniform_estimate

# Uniform answers over (0, END]: F(t) = t / END exactly.
# A billion answers: the guard past the last known completion (fewer than one left) never bites
# before the forecast stops following the schedule.
UNIFORM, END = uniform_estimate(up_to_bin=40, total=1e9)
# Wide enough never to clamp a delay on UNIFORM.
WIDE = BackoffPolicy(initial_s=1e-6, max_s=1e9)
BACKOFF = BackoffPolicy(initial_s=2.0, max_s=300.0)


def test_halving_polls_on_uniform_answers_cost_three_calls_with_lags_computed_by_hand() -> None:
    """p = 1/2 from age 0 polls at END/2, 3/4 END, 7/8 END, ...: the k-th gap is END/2^k. Calls:
    1 + (1 + 1/2 + 1/4 + ...) = 3. An answer in gap k waits up to END/2^k, so P(lag > x) is
    sum of (END/2^k - x)/END over gaps wider than x: p95 solves 1/2 - x/END = 0.05 (x = 0.45
    END), p50 solves 3/4 - 2x/END = 1/2 (x = END/8)."""
    ages = adaptive_ages(UNIFORM, 0.5, WIDE)
    assert ages[:4] == pytest.approx((0.0, END / 2, 3 * END / 4, 7 * END / 8))
    predicted = forecast(UNIFORM, ages)
    assert predicted.calls == pytest.approx(3.0, abs=FORECAST_TAIL * 2)
    assert predicted.lag_p95_s == pytest.approx(0.45 * END, rel=1e-3)
    assert predicted.lag_p50_s == pytest.approx(END / 8, rel=1e-3)
    assert predicted.polls_before_answer == pytest.approx(1.0, abs=FORECAST_TAIL * 2)


def test_on_uniform_answers_the_p95_lag_of_a_target_is_computed_by_hand() -> None:
    """p >= 0.25 from age 0: the first gap (p END) is the only one wider than the p95 lag, so
    P(lag > x) = (p END - x) / END = 0.05 gives x = (p - 0.05) END."""
    for p in (0.3, 0.5, 0.75, 0.9):
        predicted = forecast(UNIFORM, adaptive_ages(UNIFORM, p, WIDE))
        assert predicted.lag_p95_s == pytest.approx((p - 0.05) * END, rel=1e-3)
        assert predicted.calls == pytest.approx(1 + 1 / p, abs=1e-3)


@pytest.mark.parametrize("target_fraction", [0.9, 0.62, 0.5, 0.42, 0.32])
def test_a_lag_target_chooses_the_fewest_calls_that_meet_it(target_fraction: float) -> None:
    """The chosen target's forecast (delays dithered at their mean) is within the lag target;
    the candidate with the next fewer calls is not."""
    target_p_for_lag.cache_clear()
    chosen = target_p_for_lag(UNIFORM, target_fraction * END, WIDE)

    def p95(p: float) -> float:
        return forecast(UNIFORM, adaptive_ages(UNIFORM, p, WIDE, MEAN_DRAW)).lag_p95_s

    assert p95(chosen) <= target_fraction * END
    fewer_calls = TARGET_CANDIDATES[TARGET_CANDIDATES.index(chosen) - 1]
    assert p95(fewer_calls) > target_fraction * END
    # Dithered 5% down at the mean, the first gap is 0.95 p END: (0.95 p - 0.05) END.
    assert p95(chosen) == pytest.approx((0.95 * chosen - 0.05) * END, rel=1e-3)


def test_a_lag_target_no_schedule_meets_gets_the_densest() -> None:
    assert target_p_for_lag(UNIFORM, 1e-3, WIDE) == TARGET_CANDIDATES[-1]


def test_the_lag_target_replaces_the_call_budget_and_a_clients_own_wins() -> None:
    by_budget = SchedulePolicy(PollSchedule.ADAPTIVE, target_p=0.5)
    assert effective_target_p(by_budget, WIDE, UNIFORM) == 0.5
    by_lag = SchedulePolicy(PollSchedule.ADAPTIVE, target_p=0.5, target_p95_s=0.5 * END)
    # (0.95 p - 0.05) END within the target: p = 0.575 for 0.5 END, 0.375 for 0.32 END.
    assert effective_target_p(by_lag, WIDE, UNIFORM) == 0.575
    assert effective_target_p(by_lag, WIDE, UNIFORM, target_p95_s=0.32 * END) == 0.375
    assert effective_target_p(by_budget, WIDE, UNIFORM, target_p95_s=0.32 * END) == 0.375
    delay = next_delay(
        by_budget, WIDE, UNIFORM, polls_made=1, age_s=0.0, rand=0.0, target_p95_s=0.32 * END
    )
    assert delay == pytest.approx(adaptive_delay(UNIFORM, 0.0, 0.375, WIDE))


def test_the_safety_net_costs_an_arriving_callback_its_budget_whatever_the_answers() -> None:
    """Polling at conditional probability p makes (1 - p)/p polls before the answer on any
    distribution; the net's p is set so that this is SAFETY_NET_BUDGET."""
    for estimate in (UNIFORM, lognormal_estimate(15.0, 0.7), lognormal_estimate(300.0, 1.5)):
        net = forecast(estimate, adaptive_ages(estimate, SAFETY_NET_P, WIDE))
        assert net.polls_before_answer == pytest.approx(SAFETY_NET_BUDGET, abs=0.01)


def test_lag_quantiles_are_zero_when_polls_are_everywhere_and_infinite_past_the_last() -> None:
    assert lag_quantile(UNIFORM, (0.0, END / 2), 0.95) == math.inf
    every_bit = tuple(END * i / 10_000 for i in range(10_001))
    assert lag_quantile(UNIFORM, every_bit, 0.5) == pytest.approx(END / 20_000, rel=0.01)


def test_choosing_without_candidates_is_refused() -> None:
    with pytest.raises(ValueError, match="no schedule"):
        fewest_calls_within([], lambda _: 1.0, 1.0)


def lognormal_estimate(median_s: float, sigma: float) -> CompletionEstimate:
    from service.domain.completion import EDGES

    def cdf(t: float) -> float:
        return 0.0 if t <= 0 else 0.5 * math.erfc(-(math.log(t / median_s)) / (sigma * 2**0.5))

    return CompletionEstimate(
        tuple(1000 * (cdf(EDGES[i + 1]) - cdf(EDGES[i])) for i in range(BIN_COUNT))
    )


# --- properties -----------------------------------------------------------------------------

estimates = (
    st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e4)),
        min_size=BIN_COUNT,
        max_size=BIN_COUNT,
    )
    .filter(lambda ws: math.fsum(ws) > 50.0)
    .map(lambda ws: CompletionEstimate(tuple(ws)))
)
lag_targets = st.floats(min_value=0.5, max_value=3600.0)


@settings(max_examples=10, deadline=None)
@given(estimates, lag_targets, lag_targets)
def test_a_larger_lag_target_never_costs_more_calls(
    estimate: CompletionEstimate, a: float, b: float
) -> None:
    tight, loose = sorted((a, b))
    assert target_p_for_lag(estimate, tight, BACKOFF) <= target_p_for_lag(estimate, loose, BACKOFF)


@settings(max_examples=10, deadline=None)
@given(estimates, lag_targets, st.floats(min_value=0, max_value=1e5), st.floats(0, 0.999))
def test_the_lag_targets_delay_is_bounded_and_deterministic(
    estimate: CompletionEstimate, target: float, age: float, rand: float
) -> None:
    policy = SchedulePolicy(PollSchedule.ADAPTIVE, target_p95_s=target, min_completions=1.0)
    delay = next_delay(policy, BACKOFF, estimate, polls_made=2, age_s=age, rand=rand)
    assert BACKOFF.initial_s <= delay <= BACKOFF.max_s
    target_p_for_lag.cache_clear()
    again = CompletionEstimate(estimate.weights)
    assert next_delay(policy, BACKOFF, again, polls_made=2, age_s=age, rand=rand) == delay


@settings(max_examples=10, deadline=None)
@given(estimates, st.sampled_from(TARGET_CANDIDATES))
def test_a_forecast_counts_at_least_the_polls_every_task_gets(
    estimate: CompletionEstimate, p: float
) -> None:
    ages = adaptive_ages(estimate, p, BACKOFF)
    predicted = forecast(estimate, ages)
    # The first poll and the second (nothing has arrived at age 0) are always made.
    assert predicted.calls >= min(len(ages), 2) - 1e-9
    assert 0 <= predicted.lag_p50_s <= predicted.lag_p95_s
    assert all(b >= a for a, b in pairwise(ages))
