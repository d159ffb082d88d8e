"""Per-client intake limits: which limit applies, what a one-second window allows, and the
headers that tell a client where it stands.

A client's own value (set with `phonebridge api-key limits`) wins over the setting
(PHONEBRIDGE_CLIENT_MAX_RPS, PHONEBRIDGE_CLIENT_MAX_PENDING); 0 means no limit. Calls are counted
in fixed one-second windows (one counter per client and second): a client may reach twice its
rate across the edge of two windows, never more, and the counting costs one round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OFF = 0


def effective_limit(own: int | None, setting: int) -> int:
    """The limit that applies to a client: its own value when it has one, else the setting."""
    return setting if own is None else own


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """The limits that apply to one client (0: off)."""

    max_rps: int = OFF
    max_pending: int = OFF
    # The daily check budget (service/domain/budgets.py): counted per submit, not per call, so
    # it adds no RateLimit headers and is not among `any_on`.
    max_checks_per_day: int = OFF

    @property
    def any_on(self) -> bool:
        return self.max_rps > OFF or self.max_pending > OFF


def window_of(now_s: float) -> int:
    """The one-second window (whole Unix seconds) a call at `now_s` counts in."""
    return math.floor(now_s)


def seconds_to_next_window(now_s: float) -> float:
    return window_of(now_s) + 1 - now_s


@dataclass(frozen=True, slots=True)
class RateVerdict:
    """What one call's count in its window means: allowed or not, and the headers to send."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_s)
        return headers


def judge_rate(limit: int, count_in_window: int, now_s: float) -> RateVerdict:
    """The call that brought its window's count to `count_in_window` (itself included), against
    a limit above 0. Reset is whole seconds, rounded up: never 0 while the window lasts."""
    reset_s = max(1, math.ceil(seconds_to_next_window(now_s)))
    return RateVerdict(
        allowed=count_in_window <= limit,
        limit=limit,
        remaining=max(0, limit - count_in_window),
        reset_s=reset_s,
    )


def pending_room(limit: int, pending: int) -> int:
    """How many more tasks a client may have pending (a limit above 0)."""
    return max(0, limit - pending)


def pending_headers(limit: int, pending_after: int) -> dict[str, str]:
    """Without a rate limit, the headers speak of the pending limit; a pending count has no
    window, so Reset is the time to wait before asking again (1 s: it is recounted often)."""
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(pending_room(limit, pending_after)),
        "RateLimit-Reset": "1",
    }
