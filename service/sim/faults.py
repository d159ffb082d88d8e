"""Fault injection: the ways a third party misbehaves, chosen per call.

Three layers, checked in this order on every upstream call (after the credential check):

1. a *forced* mode: every call gets it, optionally for a while (``for_s``) or for a number of
   calls (e.g. "KEY_EXPIRED for the next 5 s", "the next 3 calls fail with 500");
2. an enforced rate limit: more than ``rate_limit_rps`` calls in the last second answer
   RATE_LIMIT_EXCEEDED (403), with ``Retry-After`` when ``retry_after_s`` is set;
3. per-call probabilities, one draw per call from the seeded generator.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class FaultMode(StrEnum):
    INTERNAL_ERROR = "internal_error"  # HTTP 500 INTERNAL_ERROR
    GARBAGE = "garbage"  # HTTP 200, a body that is not JSON
    HTML = "html"  # HTTP 502 text/html error page, as from a proxy
    EMPTY = "empty"  # HTTP 200 with an empty body
    SLOW = "slow"  # the normal answer, after `slow_s` seconds
    PENDING_200 = "pending_200"  # HTTP 200 with status PENDING
    UNKNOWN_STATUS = "unknown_status"  # HTTP 200 with a status nobody documented
    RATE_LIMIT = "rate_limit"  # HTTP 403 RATE_LIMIT_EXCEEDED
    RESET = "reset"  # the connection is closed (RST) without an answer
    UNAUTHORIZED = "unauthorized"  # HTTP 401 UNAUTHORIZED
    KEY_EXPIRED = "key_expired"  # HTTP 401 KEY_EXPIRED
    NO_PERMISSION = "no_permission"  # HTTP 403 NO_PERMISSION
    OUT_OF_QUOTA = "out_of_quota"  # HTTP 403 OUT_OF_QUOTA
    NOT_FOUND = "not_found"  # HTTP 404 NOT_FOUND


@dataclass(slots=True)
class ForcedFault:
    mode: FaultMode
    until: float | None = None  # wall-clock seconds; None: until switched off
    calls_left: int | None = None  # None: any number of calls

    def active(self, now: float) -> bool:
        in_time = self.until is None or now < self.until
        return in_time and (self.calls_left is None or self.calls_left > 0)


@dataclass(slots=True)
class FaultSettings:
    probabilities: dict[FaultMode, float] = field(default_factory=dict)
    slow_s: float = 5.0
    rate_limit_rps: float | None = None
    retry_after_s: int | None = None
    forced: ForcedFault | None = None

    def copy(self) -> FaultSettings:
        forced = self.forced
        return FaultSettings(
            probabilities=dict(self.probabilities),
            slow_s=self.slow_s,
            rate_limit_rps=self.rate_limit_rps,
            retry_after_s=self.retry_after_s,
            forced=None
            if forced is None
            else ForcedFault(forced.mode, forced.until, forced.calls_left),
        )


def check_probabilities(probabilities: dict[FaultMode, float]) -> None:
    """Raise ValueError unless each probability is in [0, 1] and together they are at most 1."""
    for mode, probability in probabilities.items():
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability of {mode.value} must be between 0 and 1")
    if sum(probabilities.values()) > 1.0 + 1e-9:
        raise ValueError("fault probabilities must add up to at most 1")


def take_forced_fault(settings: FaultSettings, now: float) -> FaultMode | None:
    """The forced mode for this call, if one is active; spends one of its calls."""
    forced = settings.forced
    if forced is None:
        return None
    if not forced.active(now):
        settings.forced = None
        return None
    if forced.calls_left is not None:
        forced.calls_left -= 1
    return forced.mode


def draw_random_fault(settings: FaultSettings, draw: Callable[[], float]) -> FaultMode | None:
    """At most one mode per call, each with its own probability (one draw in [0, 1))."""
    if not settings.probabilities:
        return None
    point = draw()
    band_end = 0.0
    for mode, probability in settings.probabilities.items():
        band_end += probability
        if point < band_end:
            return mode
    return None


class SlidingWindowLimit:
    """At most `limit` admitted calls in any `window_s` seconds, counted from arrival times."""

    __slots__ = ("_admitted", "limit", "window_s")

    def __init__(self, limit: float, window_s: float = 1.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._admitted: deque[float] = deque()

    def admit(self, now: float) -> bool:
        horizon = now - self.window_s
        admitted = self._admitted
        while admitted and admitted[0] <= horizon:
            admitted.popleft()
        if len(admitted) >= self.limit:
            return False
        admitted.append(now)
        return True
