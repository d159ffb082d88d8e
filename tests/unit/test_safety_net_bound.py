"""The bound on a lost callback's lag for a safety net's budget: computed by hand on uniform
answers, never above what an actual net achieves, and monotone in the budget."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.safety_net_bound import min_extra_calls, min_lost_lag_p95
from service.domain.schedule_forecast import forecast
from tests.support.estimates import uniform_estimate

END = 10.0
STEP = 0.05


def uniform(age_s: float) -> float:
    return min(max(age_s / END, 0.0), 1.0)


@pytest.mark.parametrize("budget", [0.0, 0.1, 0.2, 0.4, 0.475])
def test_uniform_answers_by_hand(budget: float) -> None:
    # Answers uniform on (0, L]. A net whose first poll is at t_1 costs at least S(t_1) =
    # 1 - t_1 / L, and the answers in (0, t_1 - P) wait longer than P: the p95 P needs
    # t_1 - P <= 5% L, so P >= t_1 - 0.05 L >= (1 - B - 0.05) L. Polls at t_1 = (1 - B) L and
    # L (free: S(L) = 0) meet it while the second gap, B L, is within P: B <= 0.475.
    exact = (1.0 - budget - 0.05) * END
    bound = min_lost_lag_p95(uniform, budget, horizon_s=END, step_s=STEP)
    assert exact - 2 * STEP - 1e-9 <= bound <= exact + 1e-9


@pytest.mark.parametrize("lag_s", [4.75, 6.5, 9.5])
def test_uniform_calls_for_a_lag_by_hand(lag_s: float) -> None:
    # The same trade read the other way: a p95 of P costs at least 1 - (P + 0.05 L) / L.
    exact = 1.0 - (lag_s + 0.05 * END) / END
    bound = min_extra_calls(uniform, lag_s, horizon_s=END, step_s=STEP)
    assert exact - 2 * STEP / END - 1e-6 <= bound <= exact + 1e-6


def test_no_budget_waits_for_the_last_answer() -> None:
    # Every poll before L costs something: only the poll at L is free, the lag is L - T.
    assert min_lost_lag_p95(uniform, 0.0, horizon_s=END, step_s=STEP) == pytest.approx(
        0.95 * END, abs=2 * STEP
    )


def test_answers_past_reach_are_never_found() -> None:
    # 90% of the answers come after the horizon (found for free), and any poll before it costs
    # at least 0.9. Leaving fewer than 5% unfound takes a poll at the horizon for at least half
    # the checks (a randomised net, as a dithered one is): 0.45 calls. Within 0.4, none does.
    def slow(age_s: float) -> float:
        return min(age_s / 100.0, 1.0)

    assert math.isinf(min_lost_lag_p95(slow, 0.4, horizon_s=10.0, step_s=0.1))
    assert math.isfinite(min_lost_lag_p95(slow, 0.46, horizon_s=10.0, step_s=0.1))


def test_a_large_budget_brings_the_bound_to_zero() -> None:
    # Polling at every grid point costs sum of S(k step) ~ L / (2 step) = 100 extra calls.
    assert min_lost_lag_p95(uniform, 200.0, horizon_s=END, step_s=STEP) == 0.0


def test_the_bound_falls_with_the_budget() -> None:
    bounds = [
        min_lost_lag_p95(uniform, budget, horizon_s=END, step_s=0.1)
        for budget in (0.0, 0.3, 0.6, 1.0, 2.0)
    ]
    assert bounds == sorted(bounds, reverse=True)
    assert bounds[0] > bounds[-1]


@pytest.mark.parametrize(
    ("budget", "step", "match"),
    [(-0.1, 0.1, "not negative"), (0.2, 0.0, "positive step"), (0.2, 20.0, "horizon")],
)
def test_refuses_a_meaningless_question(budget: float, step: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        min_lost_lag_p95(uniform, budget, horizon_s=END, step_s=step)
    with pytest.raises(ValueError, match="not negative"):
        min_extra_calls(uniform, -1.0, horizon_s=END)


ESTIMATE, ESTIMATE_END = uniform_estimate(up_to_bin=18, total=1e9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(min_value=0.05, max_value=1.0, allow_nan=False), min_size=1, max_size=8))
def test_no_net_beats_the_bound(fractions: list[float]) -> None:
    # Any net (polls at these ages, the last at the end so nothing is left unfound): its cost
    # and its lost-callback p95, forecast exactly, lie on or above the bound.
    ages = [0.0, *sorted({round(f * ESTIMATE_END, 6) for f in fractions}), ESTIMATE_END]
    ages = sorted(set(ages))
    net = forecast(ESTIMATE, ages)
    bound = min_lost_lag_p95(
        ESTIMATE.cdf, net.polls_before_answer + 1e-9, horizon_s=ESTIMATE_END, step_s=0.1
    )
    assert bound <= net.lag_p95_s + 1e-6
    assert (
        min_extra_calls(ESTIMATE.cdf, net.lag_p95_s, horizon_s=ESTIMATE_END, step_s=0.1)
        <= net.polls_before_answer + 1e-6
    )
