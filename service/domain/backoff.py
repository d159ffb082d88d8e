"""The delay between polls of a pending task: capped exponential with jitter.

Pure: the random draw is a parameter, so tests can pin it and a property test can sweep it.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_JITTER = 0.2
# Past this exponent 2**n only overflows; every realistic cap is reached long before.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class BackoffPolicy:
    initial_s: float
    max_s: float
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")


def next_poll_delay(policy: BackoffPolicy, polls_made: int, rand: float) -> float:
    """Seconds to wait before the next poll of a task that has been polled `polls_made` times.

    The base delay doubles per poll from `initial_s` (after the first poll) up to `max_s`; a jitter
    of ±`policy.jitter` spreads tasks registered together, and the result is clamped to
    [initial_s, max_s]. `rand` is a uniform draw in [0, 1).
    """
    exponent = min(max(polls_made - 1, 0), _MAX_EXPONENT)
    base = min(policy.max_s, policy.initial_s * 2.0**exponent)
    factor = 1.0 + policy.jitter * (2.0 * rand - 1.0)
    return min(policy.max_s, max(policy.initial_s, base * factor))
