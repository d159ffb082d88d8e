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

from service.domain.backoff import BackoffPolicy, next_poll_delay
from service.domain.completion import CompletionEstimate

# An estimate resting on fewer (decayed) completions than this is not trusted: cold start.
DEFAULT_MIN_COMPLETIONS = 50.0
DEFAULT_CALLS_PER_TASK = 2.5
# Old completions count half after this long (PHONEBRIDGE_POLL_ESTIMATE_HALF_LIFE_S).
DEFAULT_HALF_LIFE_S = 3600.0
# Below this many observed completions later than a task's age, the estimate knows nothing of
# its future: the age doubles instead (see above).
TAIL_MIN_COMPLETIONS = 1.0
DITHER = 0.1
# The safety net of a check whose callback is trusted (service/domain/callback_trust.py) polls where
# an answer still missing at the last poll has arrived with this probability: had the callback
# been lost, the answer is almost surely there; had it not, the poll is rarely wasted.
SAFETY_NET_CONFIDENCE = 0.95


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

    def __post_init__(self) -> None:
        if not 0 < self.target_p <= 1:
            raise ValueError("target_p must be in (0, 1]")

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
    return min(max(wanted, backoff.initial_s), backoff.max_s)


def next_delay(
    policy: SchedulePolicy,
    backoff: BackoffPolicy,
    estimate: CompletionEstimate | None,
    *,
    polls_made: int,
    age_s: float,
    rand: float,
) -> float:
    """The delay before the next poll of a task polled `polls_made` times, now `age_s` old:
    adaptive when chosen and the estimate is warm, else the plain backoff (cold start)."""
    if estimate is not None and policy.uses_estimate(estimate):
        return adaptive_delay(estimate, age_s, policy.target_p, backoff, rand)
    return next_poll_delay(backoff, polls_made, rand)


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
    now `age_s` old: where SAFETY_NET_CONFIDENCE of the answers still missing have arrived, on a
    warm estimate (whichever schedule polls the other tasks); before that, at `first_s` of age
    and then doubling the age. Clamped to [backoff.initial_s, backoff.max_s]."""
    if estimate is not None and estimate.total >= policy.min_completions:
        next_age = adaptive_next_age(estimate, age_s, SAFETY_NET_CONFIDENCE)
        wanted = (next_age - age_s) * (1.0 - DITHER * rand)
    else:
        wanted = max(first_s - age_s, age_s)
    return min(max(wanted, backoff.initial_s), backoff.max_s)


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
