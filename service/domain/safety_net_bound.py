"""How soon any safety net can find a lost callback's answer for a given cost to the checks whose
callbacks arrive: a lower bound, whatever the net's placement.

A check submitted with a callback is polled by its safety net at ages t_1 < t_2 < ... (its submit
at age 0). Its answer is ready at age T (CDF F, survival S = 1 - F).

- If its callback arrives, each net poll made while the answer is still missing is a call the
  callback would have made unnecessary: extra calls = sum over i of S(t_i). A net poll after the
  answer but before its callback finds the answer and the callback's poll is then not made, so the
  callback's delay does not enter the cost.
- If its callback is lost, the net alone finds the answer, at the first t_i >= T: its lag is
  t_i - T. The lag's p95 is at most P exactly when the answers left more than P before the next
  poll (after the last one, all of them) hold at most 5% of the mass.

So the question "the smallest lost-callback p95 for a budget of B extra calls" is: cover all but
5% of the completion mass by windows [t_i - P, t_i], each costing S(t_i), within B, for the
smallest P. The cost of covering an answer is high where S is high (early: every check pays for
that poll) and low in the tail. `min_lost_lag_p95` answers it as a bound:

- Poll ages are relaxed to a grid of `step_s`: a poll at age t counts as one at the next grid
  point (costing S there, no more than S(t)) covering down to the previous grid point minus P (at
  least what it covered). Answers past `horizon_s` count as found for free.
- The 5% constraint is relaxed by a Lagrange multiplier: for each multiplier the cheapest
  placement of cost + multiplier * (mass left uncovered) is found exactly by dynamic programming
  over the grid (O(grid) per multiplier, with a sliding minimum for gaps within P and a suffix
  minimum for wider ones); its value less multiplier * 5% bounds the cost of every placement that
  meets the constraint, randomised (dithered) ones included.

Every relaxation only lowers the cost, so the bound holds for every net: a p95 below it costs more
than the budget. It is tight up to the grid (two steps) where the trade-off is convex, as on the
uniform distribution, where it is computed by hand in tests/unit/test_safety_net_bound.py.

Pure: the distribution is a CDF parameter.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# The lag quantile bounded: the p95.
LOST_LAG_QUANTILE = 0.95
# Bisection steps on the multiplier (on a log scale) and its range.
_MULTIPLIER_STEPS = 40
_MULTIPLIER_MIN = 1e-6
_MULTIPLIER_MAX = 1e7


@dataclass(frozen=True)
class _Placement:
    """The best placement for one multiplier: its extra calls and the mass it leaves uncovered."""

    calls: float
    uncovered: float

    def value(self, multiplier: float) -> float:
        return self.calls + multiplier * self.uncovered


class _Grid:
    """F at the grid's ages 0, step, ..., horizon; the mass past the horizon counts as covered."""

    def __init__(self, cdf: Callable[[float], float], horizon_s: float, step_s: float) -> None:
        if not (step_s > 0 and horizon_s >= step_s):
            raise ValueError("the grid needs a positive step and a horizon of at least one step")
        size = math.ceil(horizon_s / step_s)
        self.step_s = step_s
        self.arrived = [min(max(cdf(index * step_s), 0.0), 1.0) for index in range(size + 1)]
        for index in range(1, size + 1):  # a CDF never decreases; rounding must not say it does
            self.arrived[index] = max(self.arrived[index], self.arrived[index - 1])
        self.arrived[0] = 0.0
        self.last = size

    def best(self, window: int, multiplier: float) -> _Placement:
        """The placement minimising extra calls + multiplier * uncovered mass when a poll at grid
        point k covers the answers in ((k - window) step, k step]."""
        arrived, last = self.arrived, self.last
        end_mass = arrived[last]
        calls = [0.0] * (last + 1)
        uncovered = [0.0] * (last + 1)
        value = [0.0] * (last + 1)
        # Candidates for the next poll k after a poll at j: within the window (nothing uncovered
        # between), by a monotone deque of (value of polling at k, k); past it, the best of
        # S_k + multiplier * F_(k - window) + V_k so far (uncovered F_(k - window) - F_j).
        near: deque[tuple[float, int]] = deque()
        far_best = math.inf
        far_at = -1
        for j in range(last, -1, -1):
            entering = j + window + 1
            if entering <= last:
                candidate = (1.0 - arrived[entering]) + multiplier * arrived[entering - window]
                candidate += value[entering]
                if candidate < far_best:
                    far_best, far_at = candidate, entering
            if j + 1 <= last:
                polled = (1.0 - arrived[j + 1]) + value[j + 1]
                while near and near[-1][0] >= polled:
                    near.pop()
                near.append((polled, j + 1))
            while near and near[0][1] > j + window:
                near.popleft()
            # Stop here: the answers after this poll (up to the horizon) are left uncovered.
            best_value = multiplier * (end_mass - arrived[j])
            best_calls, best_uncovered = 0.0, end_mass - arrived[j]
            if near and near[0][0] < best_value:
                k = near[0][1]
                best_value = near[0][0]
                best_calls = (1.0 - arrived[k]) + calls[k]
                best_uncovered = uncovered[k]
            if far_at >= 0 and far_best - multiplier * arrived[j] < best_value:
                k = far_at
                best_value = far_best - multiplier * arrived[j]
                best_calls = (1.0 - arrived[k]) + calls[k]
                best_uncovered = max(arrived[k - window] - arrived[j], 0.0) + uncovered[k]
            calls[j], uncovered[j], value[j] = best_calls, best_uncovered, best_value
        return _Placement(calls[0], uncovered[0])

    def cost_bound(self, window: int, allowed: float) -> float:
        """A lower bound on the extra calls of any placement leaving at most `allowed` of the
        mass uncovered with this window: the Lagrangian dual, maximised by bisection on the
        multiplier (every multiplier gives a valid bound; the best one is kept)."""
        low, high = math.log(_MULTIPLIER_MIN), math.log(_MULTIPLIER_MAX)
        bound = 0.0
        for _ in range(_MULTIPLIER_STEPS):
            multiplier = math.exp((low + high) / 2)
            placement = self.best(window, multiplier)
            bound = max(bound, placement.value(multiplier) - multiplier * allowed)
            if placement.uncovered > allowed:
                low = math.log(multiplier)
            else:
                high = math.log(multiplier)
        return bound


def min_extra_calls(
    cdf: Callable[[float], float],
    lost_lag_p95_s: float,
    *,
    horizon_s: float,
    step_s: float = 0.1,
) -> float:
    """A lower bound on the extra calls (net polls before the answer, on average) of a check whose
    callback arrives, over every safety net that finds lost callbacks' answers within
    `lost_lag_p95_s` at p95; answers ready at ages with CDF `cdf`."""
    if lost_lag_p95_s < 0:
        raise ValueError("a lag is not negative")
    grid = _Grid(cdf, horizon_s, step_s)
    # A net meeting P on continuous ages is, on the grid, one with window ceil(P / step) + 1.
    window = min(math.ceil(lost_lag_p95_s / step_s - 1e-9) + 1, grid.last + 1)
    return grid.cost_bound(window, 1.0 - LOST_LAG_QUANTILE)


def min_lost_lag_p95(
    cdf: Callable[[float], float],
    extra_calls: float,
    *,
    horizon_s: float,
    step_s: float = 0.1,
) -> float:
    """A lower bound on the p95 lag of a check whose callback is lost, over every safety net whose
    checks with arriving callbacks make at most `extra_calls` net polls before their answer on
    average; answers ready at ages with CDF `cdf`. Within two `step_s` of the best net on the
    grid; infinite when no net leaves less than 5% of the answers unfound by `horizon_s`."""
    if extra_calls < 0:
        raise ValueError("a budget of calls is not negative")
    grid = _Grid(cdf, horizon_s, step_s)
    allowed = 1.0 - LOST_LAG_QUANTILE
    # A poll at k covers ((k - window) step, k step]; a net meeting lag P on continuous ages is,
    # on the grid, one with window ceil(P / step) + 1. So the smallest window whose bound is
    # within the budget, m, says that any P met satisfies P > (m - 2) step.
    if grid.cost_bound(grid.last + 1, allowed) > extra_calls:
        return math.inf
    low, high = 0, grid.last + 1  # cost_bound(low) > budget unless low is 0; high fits
    if grid.cost_bound(0, allowed) <= extra_calls:
        return 0.0
    while high - low > 1:
        middle = (low + high) // 2
        if grid.cost_bound(middle, allowed) <= extra_calls:
            high = middle
        else:
            low = middle
    return max((high - 2) * step_s, 0.0)
