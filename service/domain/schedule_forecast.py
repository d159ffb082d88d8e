"""What a poll schedule will cost and how late it will find answers, read off the learnt
completion-time estimate (service/domain/completion.py) before a single poll is made.

A schedule here is the ages at which a task is polled, the first at age 0 (a registered task's
first poll, a submitted check's submit). An answer ready at age T, with t_(k-1) < T <= t_k, is
found by the poll at t_k, `t_k - T` after it was ready (its lag), after k + 1 calls. With F the
estimate's CDF and S = 1 - F:

    calls       = 1 + sum over k >= 0 of S(t_k)          (a poll at t_(k+1) is made iff T > t_k)
    P(lag > x)  = sum over k >= 1 of max(F(t_k - x) - F(t_(k-1)), 0) + S(t_last)

The forecast is what `PHONEBRIDGE_POLL_TARGET_P95_S` is met with: of the schedules of one family,
the one with the fewest calls whose forecast p95 lag is within the target. It is also how the
safety net of checks with callbacks is placed (`safety_net_lag_cap`).

Pure: the estimate and the schedule's next-age rule are parameters; the choices are cached per
estimate, since a batch of polls shares one estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from service.domain.completion import CompletionEstimate

# A schedule is followed until this little of the mass is left, or for this many polls.
FORECAST_TAIL = 1e-4
FORECAST_MAX_POLLS = 200
# Bisection steps of a lag quantile: the answer to 1/16,000 of the widest gap (20 ms of 300 s);
# each step reads the CDF once per poll, and a lag target's choice takes many.
_BISECT_STEPS = 14


@dataclass(frozen=True)
class Forecast:
    """A schedule's expected cost and lag on the estimate's completion times."""

    calls: float
    lag_p50_s: float
    lag_p95_s: float
    # Polls made while the answer is still missing, the first poll (age 0) left out: what the
    # safety net costs a check whose callback arrives (its callback makes the poll that finds it).
    polls_before_answer: float


def schedule_ages(
    estimate: CompletionEstimate, next_age: Callable[[float], float], horizon_s: float
) -> tuple[float, ...]:
    """The ages a task is polled at under `next_age` (the first at 0), until the estimate leaves
    less than FORECAST_TAIL of the answers missing, `horizon_s` is passed, or FORECAST_MAX_POLLS."""
    ages = [0.0]
    while len(ages) < FORECAST_MAX_POLLS and ages[-1] < horizon_s:
        if 1.0 - estimate.cdf(ages[-1]) < FORECAST_TAIL:
            break
        ages.append(max(next_age(ages[-1]), ages[-1]))
    return tuple(ages)


def forecast(estimate: CompletionEstimate, ages: Sequence[float]) -> Forecast:
    """The forecast of polling at `ages` (increasing, the first at 0) on a non-empty estimate."""
    survival = [1.0 - estimate.cdf(age) for age in ages]
    return Forecast(
        calls=1.0 + sum(survival),
        lag_p50_s=lag_quantile(estimate, ages, 0.5),
        lag_p95_s=lag_quantile(estimate, ages, 0.95),
        polls_before_answer=sum(survival[1:]),
    )


def lag_quantile(estimate: CompletionEstimate, ages: Sequence[float], q: float) -> float:
    """The smallest lag x with P(lag > x) <= 1 - q (infinite when more than 1 - q of the answers
    come after the last age)."""
    arrived = [estimate.cdf(age) for age in ages]

    def share_later(lag_s: float) -> float:
        """P(lag > lag_s): answers found more than `lag_s` after they were ready, or never."""
        share = 1.0 - arrived[-1]
        for index, (before, at) in enumerate(pairwise(ages)):
            if at - lag_s > before:
                share += max(estimate.cdf(at - lag_s) - arrived[index], 0.0)
        return share

    if share_later(0.0) <= 1.0 - q:
        return 0.0
    low = 0.0
    high = max((b - a for a, b in pairwise(ages)), default=0.0)
    if share_later(high) > 1.0 - q:
        return float("inf")
    for _ in range(_BISECT_STEPS):
        middle = (low + high) / 2
        if share_later(middle) > 1.0 - q:
            low = middle
        else:
            high = middle
    return high


def fewest_calls_within(
    parameters: Iterable[float], p95_of: Callable[[float], float], target_p95_s: float
) -> float:
    """Of schedule parameters ordered from fewest calls to most, the first whose forecast p95 lag
    (`p95_of`) is within `target_p95_s` (the later ones are not forecast); the last (the
    densest) if none is."""
    last: float | None = None
    for parameter in parameters:
        if p95_of(parameter) <= target_p95_s:
            return parameter
        last = parameter
    if last is None:
        raise ValueError("no schedule to choose from")
    return last
