"""When upstream's answers arrive: an estimate of the completion-time distribution, learnt from
what polling observes.

A task's completion time is its answer's age, counted from `submitted_at`. Polling never sees it
exactly: a completed task only tells that its answer arrived after its last PENDING answer and
no later than the OK answer (an interval-censored observation). The estimate is a histogram over
fixed log-spaced bins (dense where seconds matter, coarse in the hours), so it is compact (one
array of BIN_COUNT weights), mergeable (two estimates add bin by bin) and cheap to update in SQL.
Within a bin the mass is spread uniformly, so the CDF is piecewise linear.

Each observation's unit of weight is spread over the bins its interval overlaps in proportion
to the current estimate's mass there (plus a small uniform-in-log-time prior): one step of the
self-consistency (Turnbull) rule per batch, which keeps wide intervals from smearing the estimate
while a cold estimate starts from "any order of magnitude is as likely". Old weight decays by
half every half-life, so the estimate follows upstream when it speeds up or slows down.

Pure: no clock, no I/O; elapsed times and the half-life are parameters.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

# Bin 0 is (0, FIRST_EDGE_S]; bins 1.. are log-spaced up to LAST_EDGE_S (a week: past every TTL
# a deployment is likely to set). 64 bins give steps of about 26% of the age.
BIN_COUNT = 64
FIRST_EDGE_S = 0.25
LAST_EDGE_S = 7 * 86400.0
_RATIO = (LAST_EDGE_S / FIRST_EDGE_S) ** (1.0 / (BIN_COUNT - 1))
EDGES: tuple[float, ...] = (
    0.0,
    *(FIRST_EDGE_S * _RATIO**i for i in range(BIN_COUNT - 1)),
    LAST_EDGE_S,
)
# The pseudo-count per bin that apportions observations when little is known yet; negligible
# next to a warm estimate's weight (hundreds), decisive for a cold one.
PRIOR_WEIGHT_PER_BIN = 0.05


@dataclass(frozen=True)
class Observation:
    """One completed task: its answer arrived in (after_s, by_s] of age; or one that expired
    unanswered: by_s is infinite (right-censored at after_s)."""

    after_s: float
    by_s: float

    @property
    def censored(self) -> bool:
        return math.isinf(self.by_s)


def completion_interval(
    submitted_s: float, last_pending_s: float | None, answered_s: float
) -> Observation:
    """The observation of a task completed at `answered_s` (epoch seconds), last seen PENDING at
    `last_pending_s` (None: never), submitted at `submitted_s`; ages below zero (clock skew)
    count as zero."""
    by_s = max(answered_s - submitted_s, 0.0)
    after_s = 0.0 if last_pending_s is None else max(last_pending_s - submitted_s, 0.0)
    return Observation(min(after_s, by_s), by_s)


def not_answered_by(submitted_s: float, last_pending_s: float) -> Observation:
    """The observation of a task that expires unanswered, last seen PENDING at `last_pending_s`
    (epoch seconds): its answer comes, if ever, after that age. Counting it keeps the estimate
    from learning only the answers that came in time (a survivor bias that would make the
    schedule poll ever earlier while upstream slows down)."""
    return Observation(max(last_pending_s - submitted_s, 0.0), math.inf)


@dataclass(frozen=True)
class CompletionEstimate:
    """Weights of the completion-time histogram (bin i covers (EDGES[i], EDGES[i + 1]])."""

    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.weights) != BIN_COUNT:
            raise ValueError(f"an estimate has {BIN_COUNT} bins")
        if any(not (w >= 0 and math.isfinite(w)) for w in self.weights):
            raise ValueError("bin weights must be finite and not negative")

    @classmethod
    def empty(cls) -> CompletionEstimate:
        return cls((0.0,) * BIN_COUNT)

    @classmethod
    def of(cls, weights: Sequence[float]) -> CompletionEstimate:
        """An estimate from stored weights: a shorter or longer array (another bin layout) is
        padded or cut, so a stored row never makes the engine fail."""
        padded = [max(float(w), 0.0) for w in weights[:BIN_COUNT]]
        return cls((*padded, *(0.0,) * (BIN_COUNT - len(padded))))

    @cached_property
    def _prefix_sums(self) -> tuple[float, ...]:
        """fsum of the first i weights, for i = 0..BIN_COUNT: computed once per estimate, since
        the schedule asks `cdf` and `total` several times per poll of the same estimate."""
        return tuple(math.fsum(self.weights[:i]) for i in range(BIN_COUNT + 1))

    @property
    def total(self) -> float:
        """The (decayed) number of completions the estimate rests on."""
        return self._prefix_sums[BIN_COUNT]

    def cdf(self, age_s: float) -> float:
        """Estimated probability that an answer has arrived by age `age_s`; 0 when empty."""
        total = self.total
        if total <= 0 or age_s <= 0:
            return 0.0
        if age_s >= LAST_EDGE_S:
            return 1.0
        index = bisect.bisect_right(EDGES, age_s) - 1
        low, high = EDGES[index], EDGES[index + 1]
        below = self._prefix_sums[index]
        inside = self.weights[index] * (age_s - low) / (high - low)
        return min((below + inside) / total, 1.0)

    def quantile(self, q: float) -> float:
        """The smallest age by which a share `q` (in [0, 1]) of answers has arrived."""
        total = self.total
        if total <= 0:
            raise ValueError("an empty estimate has no quantiles")
        wanted = min(max(q, 0.0), 1.0) * total
        cumulative = 0.0
        for index, weight in enumerate(self.weights):
            if weight > 0 and cumulative + weight >= wanted:
                low, high = EDGES[index], EDGES[index + 1]
                share = max(wanted - cumulative, 0.0) / weight
                return low + share * (high - low)
            cumulative += weight
        return self.support_end()

    def support_end(self) -> float:
        """The age by which, as far as the estimate knows, every answer has arrived."""
        for index in range(BIN_COUNT - 1, -1, -1):
            if self.weights[index] > 0:
                return EDGES[index + 1]
        return 0.0

    def decayed(self, elapsed_s: float, half_life_s: float) -> CompletionEstimate:
        """The estimate `elapsed_s` later: every weight halves per `half_life_s`."""
        factor = decay_factor(elapsed_s, half_life_s)
        return CompletionEstimate(tuple(w * factor for w in self.weights))

    def merged(self, other: CompletionEstimate) -> CompletionEstimate:
        """Both estimates' evidence together (bin by bin), as of the same moment."""
        return CompletionEstimate(
            tuple(a + b for a, b in zip(self.weights, other.weights, strict=True))
        )

    def plus(self, increments: Sequence[float]) -> CompletionEstimate:
        return self.merged(CompletionEstimate(tuple(increments)))


def decay_factor(elapsed_s: float, half_life_s: float) -> float:
    """How much of a weight remains after `elapsed_s` (time never runs backwards here)."""
    if half_life_s <= 0:
        raise ValueError("half_life_s must be positive")
    return float(0.5 ** (max(elapsed_s, 0.0) / half_life_s))


def apportion(
    estimate: CompletionEstimate, observations: Iterable[Observation]
) -> tuple[float, ...]:
    """The bin increments of a batch of observations: one unit of weight each, spread over the
    bins its interval overlaps in proportion to the estimate's mass there (plus the prior); a
    censored one over every bin past its age (to LAST_EDGE_S), the Turnbull step for a
    right-censored observation. An interval of zero width (or one past LAST_EDGE_S) counts wholly
    in the bin of its end."""
    increments = [0.0] * BIN_COUNT
    for observation in observations:
        by_s = min(max(observation.by_s, 0.0), LAST_EDGE_S)
        after_s = min(max(observation.after_s, 0.0), by_s)
        if by_s - after_s <= 0:
            increments[_bin_of(by_s)] += 1.0
            continue
        first, last = _bin_of_open(after_s), _bin_of(by_s)
        shares: list[tuple[int, float]] = []
        for index in range(first, last + 1):
            low, high = EDGES[index], EDGES[index + 1]
            overlap = (min(high, by_s) - max(low, after_s)) / (high - low)
            if overlap > 0:
                shares.append((index, overlap * (estimate.weights[index] + PRIOR_WEIGHT_PER_BIN)))
        norm = math.fsum(share for _, share in shares)
        if norm <= 0:
            increments[last] += 1.0
            continue
        for index, share in shares:
            increments[index] += share / norm
    return tuple(increments)


def _bin_of(age_s: float) -> int:
    """The bin (EDGES[i], EDGES[i + 1]] that holds `age_s` (bin 0 also holds 0)."""
    return min(max(bisect.bisect_left(EDGES, age_s) - 1, 0), BIN_COUNT - 1)


def _bin_of_open(age_s: float) -> int:
    """The first bin with any part above `age_s`."""
    return min(max(bisect.bisect_right(EDGES, age_s) - 1, 0), BIN_COUNT - 1)
