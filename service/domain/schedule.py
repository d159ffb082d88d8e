"""When to poll a pending task next: plain backoff, or the adaptive schedule that follows the
completion times polling has observed (service/domain/completion.py).

The adaptive rule: a task still pending at age `a` (since `submitted_at`) is polled next at the
age `t` where the probability that its answer arrived in (a, t], given that it had not by `a`,
reaches the target `p`:

    (F(t) - F(a)) / (1 - F(a)) = p,   so   t = F⁻¹(p + (1 - p) · F(a))

Polls are then dense where answers are dense and sparse in the long tail. Each poll after the
first finds the answer with probability `p` (when the estimate matches upstream), so a task
costs on average 1 + 1/p calls: the registration poll and 1/p more. The target is therefore set
as a call budget per task (PHONEBRIDGE_POLL_CALLS_PER_TASK), the trade-off a user can reason
about: fewer calls, longer waits. The delay is always clamped to [initial_s, max_s].

The target can instead be a lag: with PHONEBRIDGE_POLL_TARGET_P95_S (or a client's own
`poll_target_p95_s`), `p` is chosen per estimate as the largest of TARGET_CANDIDATES (the fewest
calls) whose forecast p95 lag (service/domain/schedule_forecast.py) is within the target.

Two guards keep the estimate honest, because it learns only from where polls land:

- Past what the estimate knows (less than one observed completion later than the task's age),
  the next poll doubles the age, as backoff would, rather than trusting an empty tail: early on
  only the fast answers have arrived, and a slower upstream must still be found.
- The delay is drawn in [1 - DITHER, 1] of the rule's (from the caller's uniform draw), so the
  polls of tasks of one age do not all land on the same instants; the intervals they observe
  then overlap differently, which is what lets the estimate sharpen inside them.

Pure: the estimate, the ages and the policy are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from service.domain.backoff import BackoffPolicy, next_poll_delay
from service.domain.completion import CompletionEstimate
from service.domain.schedule_forecast import (
    fewest_calls_within,
    lag_quantile,
    schedule_ages,
)

# An estimate resting on fewer (decayed) completions than this is not trusted: cold start.
DEFAULT_MIN_COMPLETIONS = 50.0
# 3 calls (p = 1/2) is the point of the front (bench/schedule.py) that beats plain backoff on
# calls, p50 and p95 at once on the lognormal mix; 2.5 saved more calls, but its median lag was
# worse than backoff's.
DEFAULT_CALLS_PER_TASK = 3.0
# Old completions count half after this long (PHONEBRIDGE_POLL_ESTIMATE_HALF_LIFE_S).
DEFAULT_HALF_LIFE_S = 3600.0
# Below this many observed completions later than a task's age, the estimate knows nothing of
# its future: the age doubles instead (see above).
TAIL_MIN_COMPLETIONS = 1.0
DITHER = 0.1
# The per-poll targets a lag target chooses from, fewest calls (1 + 1/p) first: 1 to 0.1 by 0.025.
TARGET_CANDIDATES = tuple(round(1.0 - 0.025 * step, 3) for step in range(37))
# The forecast behind a lag target follows the dithered delays at their mean draw.
MEAN_DRAW = 0.5
# How far past the answers the forecast follows a schedule (the estimate's last bin ends at a week).
FORECAST_HORIZON_S = 7 * 86400.0

# The safety net of a check whose callback is trusted (service/domain/callback_trust.py) is a
# schedule of its own: a check whose callback arrives pays for each net poll made before its
# answer, a check whose callback is lost is found by the net alone. Polling from the submit (age
# 0) where an answer still missing has arrived with probability p makes (1 - p) / p polls before
# the answer, whatever the distribution: p = 1 / (1 + SAFETY_NET_BUDGET) keeps a check whose
# callback arrives at its submit, its callback's poll and SAFETY_NET_BUDGET net polls (a little
# more: the dither makes delays 5% shorter on average; 0.2 measures 0.25 in bench/schedule.py). The
# callback's own delay does not move this: a net poll made after the answer but before its
# callback finds the answer, and the callback's poll is then not made. A lost callback is found
# with the adaptive schedule's lag at p (about 24 s at p95 on the lognormal mix): later than
# polling at the default, since a net as dense costs what polling does (bench/schedule.py's net
# curve). Nets with gaps capped at a lag L (first at the 4% quantile + L, then every L) were
# tried: at the same cost their p95 was no better.
SAFETY_NET_BUDGET = 0.2
SAFETY_NET_P = 1.0 / (1.0 + SAFETY_NET_BUDGET)


class PollSchedule(StrEnum):
    """How the delay between polls of a pending task is chosen (PHONEBRIDGE_POLL_SCHEDULE)."""

    BACKOFF = "backoff"
    ADAPTIVE = "adaptive"


def target_probability(calls_per_task: float) -> float:
    """The per-poll probability of finding the answer that makes a task cost `calls_per_task`
    upstream calls on average (the registration poll included): 1 / (calls - 1)."""
    if calls_per_task < 2:
        raise ValueError("a task costs at least 2 calls: the registration poll and one more")
    return 1.0 / (calls_per_task - 1.0)


@dataclass(frozen=True)
class SchedulePolicy:
    """Which schedule, its target, and how many completions make the estimate warm."""

    schedule: PollSchedule = PollSchedule.BACKOFF
    target_p: float = 1.0 / (DEFAULT_CALLS_PER_TASK - 1.0)
    min_completions: float = DEFAULT_MIN_COMPLETIONS
    # PHONEBRIDGE_POLL_TARGET_P95_S: when set, it chooses `p` per estimate instead of `target_p`.
    target_p95_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.target_p <= 1:
            raise ValueError("target_p must be in (0, 1]")
        if self.target_p95_s is not None and not self.target_p95_s > 0:
            raise ValueError("target_p95_s must be positive")

    def uses_estimate(self, estimate: CompletionEstimate | None) -> bool:
        """Whether the adaptive rule applies: chosen, and the estimate is warm."""
        return (
            self.schedule is PollSchedule.ADAPTIVE
            and estimate is not None
            and estimate.total >= self.min_completions
        )


def adaptive_next_age(estimate: CompletionEstimate, age_s: float, target_p: float) -> float:
    """The unclamped age of the next poll: where the conditional probability of an answer since
    `age_s` reaches `target_p`; past what the estimate knows, twice the age (or the end of what
    it knows, if later)."""
    arrived = estimate.cdf(age_s)
    if estimate.total * (1.0 - arrived) < TAIL_MIN_COMPLETIONS:
        return max(2.0 * age_s, estimate.support_end())
    return max(age_s, estimate.quantile(target_p + (1.0 - target_p) * arrived))


def adaptive_delay(
    estimate: CompletionEstimate,
    age_s: float,
    target_p: float,
    backoff: BackoffPolicy,
    rand: float = 0.0,
) -> float:
    """Seconds from now (the task is `age_s` old) to its next poll, within
    [backoff.initial_s, backoff.max_s]; `rand` (uniform in [0, 1)) dithers it down by up to
    DITHER. For any one draw, the next poll's age is monotone in `age_s`."""
    wanted = (adaptive_next_age(estimate, age_s, target_p) - age_s) * (1.0 - DITHER * rand)
    return _clamped(wanted, backoff)


def adaptive_ages(
    estimate: CompletionEstimate, target_p: float, backoff: BackoffPolicy, rand: float = 0.0
) -> tuple[float, ...]:
    """The ages a new task is polled at by the adaptive rule, every delay dithered by the same
    draw `rand` (0: undithered), the first at 0."""
    return schedule_ages(
        estimate,
        lambda age: age + adaptive_delay(estimate, age, target_p, backoff, rand),
        FORECAST_HORIZON_S,
    )


@lru_cache(maxsize=64)
def target_p_for_lag(
    estimate: CompletionEstimate, target_p95_s: float, backoff: BackoffPolicy
) -> float:
    """The per-poll target that meets a p95 lag target with the fewest calls on this estimate:
    the first of TARGET_CANDIDATES whose forecast p95 (delays dithered at MEAN_DRAW) is within
    it (the densest if none is). A larger target never chooses more calls."""
    return fewest_calls_within(
        TARGET_CANDIDATES,
        lambda p: lag_quantile(estimate, adaptive_ages(estimate, p, backoff, MEAN_DRAW), 0.95),
        target_p95_s,
    )


def effective_target_p(
    policy: SchedulePolicy,
    backoff: BackoffPolicy,
    estimate: CompletionEstimate,
    target_p95_s: float | None = None,
) -> float:
    """The per-poll target on this estimate: from the lag target (a client's own, else the
    policy's) when one is set, else the policy's call budget."""
    lag_target = target_p95_s if target_p95_s is not None else policy.target_p95_s
    if lag_target is None:
        return policy.target_p
    return target_p_for_lag(estimate, lag_target, backoff)


def next_delay(
    policy: SchedulePolicy,
    backoff: BackoffPolicy,
    estimate: CompletionEstimate | None,
    *,
    polls_made: int,
    age_s: float,
    rand: float,
    target_p95_s: float | None = None,
) -> float:
    """The delay before the next poll of a task polled `polls_made` times, now `age_s` old:
    adaptive when chosen and the estimate is warm (towards `target_p95_s`, a client's own lag
    target, when given), else the plain backoff (cold start)."""
    if estimate is not None and policy.uses_estimate(estimate):
        target_p = effective_target_p(policy, backoff, estimate, target_p95_s)
        return adaptive_delay(estimate, age_s, target_p, backoff, rand)
    return next_poll_delay(backoff, polls_made, rand)


def _clamped(delay_s: float, backoff: BackoffPolicy) -> float:
    return min(max(delay_s, backoff.initial_s), backoff.max_s)


def safety_net_delay(
    policy: SchedulePolicy,
    backoff: BackoffPolicy,
    estimate: CompletionEstimate | None,
    *,
    age_s: float,
    first_s: float,
    rand: float,
) -> float:
    """The delay before the next safety-net poll of a pending check whose callback is trusted,
    now `age_s` old (0: at its submit): on a warm estimate, where an answer still missing has
    arrived with probability SAFETY_NET_P (whichever schedule polls the other tasks), dithered
    down by up to DITHER; before that, at `first_s` of age (PHONEBRIDGE_HINTED_POLL_INITIAL_S)
    and then doubling the age. Clamped to [backoff.initial_s, backoff.max_s]."""
    if estimate is not None and estimate.total >= policy.min_completions:
        next_age = adaptive_next_age(estimate, age_s, SAFETY_NET_P)
        wanted = (next_age - age_s) * (1.0 - DITHER * rand)
    else:
        wanted = max(first_s - age_s, age_s)
    return _clamped(wanted, backoff)


# Under saturation a client's re-polls likelier to find their answer may go before its first polls
# (service/store/poll_claims.py, the claim), but never before one overdue by more than this: the
# contract's first poll within about a second (one scheduler tick, 0.25 s, comes on top).
FIRST_POLL_MAX_WAIT_S = 0.25


def finish_probability(
    estimate: CompletionEstimate | None, from_age_s: float, to_age_s: float
) -> float | None:
    """The probability that an answer still missing at `from_age_s` has arrived by `to_age_s`
    (None when nothing is known). The claim serves a client's due tasks in this order."""
    if estimate is None or estimate.total <= 0:
        return None
    before = estimate.cdf(from_age_s)
    if before >= 1.0:
        return 0.0
    return max(estimate.cdf(to_age_s) - before, 0.0) / (1.0 - before)
