"""What an upstream answer means for every call of every process, polls and submits alike
(`reaction_to`): an account problem opens the global pause, an answer while paused (or to the
probe) closes it, RATE_LIMIT_EXCEEDED stops calls for its Retry-After and lowers the shared rate.

How much to lower the shared upstream rate when upstream answers RATE_LIMIT_EXCEEDED: in
proportion to the share of calls it refused lately, not by half at every refusal.

Halving at each refusal (at most once a second) pinned the rate near its floor when upstream
refused a few calls at random, not because of the rate: 3% of random refusals held a 400 calls/s
ceiling at ~32 calls/s. With the decrease equal to the refused share, 3% of refusals lower the
rate by 3% at a time, which the additive recovery outweighs; a rate that upstream really finds too
high sees a large share refused and is cut hard, as before (by half at most per decrease).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from service.domain.answers import Outcome, OutcomeKind

WINDOW_S = 10.0
# The strongest single decrease, as before: half.
MIN_MULTIPLIER = 0.5


@dataclass(frozen=True)
class Reaction:
    """What one answer changes for everyone; the default changes nothing."""

    # Open the pause with this reason (an account problem: UNAUTHORIZED, OUT_OF_QUOTA, ...).
    pause_reason: str | None = None
    # Close the pause: upstream answered the probe, or a call this process believed paused.
    resume: bool = False
    # Stop every call for this long (a RATE_LIMIT_EXCEEDED with Retry-After).
    block_for_s: float | None = None
    # Lower the shared rate by the refusal window's multiplier.
    slow_down: bool = False


def reaction_to(outcome: Outcome, *, probe: bool, believed_paused: bool) -> Reaction:
    """The reaction to one classified answer, a poll's or a submit's. `probe` marks the call the
    scheduler sends while paused; `believed_paused` is whether the calling process thought the
    pause open. A transport failure (no answer) neither pauses nor resumes."""
    if outcome.kind is OutcomeKind.ACCOUNT_PROBLEM:
        return Reaction(pause_reason=outcome.code)
    rate_limited = outcome.kind is OutcomeKind.RATE_LIMITED
    return Reaction(
        resume=outcome.answered and (probe or believed_paused),
        block_for_s=(outcome.retry_after_s or None) if rate_limited else None,
        slow_down=rate_limited,
    )


def decrease_multiplier(refused: int, calls: int) -> float:
    """The factor to multiply the rate by after a refusal, given the calls made and refused
    over the recent window (the refusal itself included)."""
    if calls <= 0 or refused <= 0:
        return 1.0
    share = min(1.0, refused / calls)
    return max(MIN_MULTIPLIER, 1.0 - share)


@dataclass
class RefusalWindow:
    """The calls one process made and how many were refused, per second over the last
    `window_s` seconds (a process's own calls are a fair sample of everyone's)."""

    window_s: float = WINDOW_S
    _seconds: deque[list[int]] = field(default_factory=deque)  # [second, calls, refused]

    def record(self, now_s: float, *, refused: bool) -> None:
        second = math.floor(now_s)
        if not self._seconds or self._seconds[-1][0] != second:
            self._seconds.append([second, 0, 0])
        self._seconds[-1][1] += 1
        self._seconds[-1][2] += int(refused)
        self._forget_before(now_s)

    def counts(self, now_s: float) -> tuple[int, int]:
        """(refused, calls) within the window."""
        self._forget_before(now_s)
        return sum(s[2] for s in self._seconds), sum(s[1] for s in self._seconds)

    def multiplier(self, now_s: float) -> float:
        refused, calls = self.counts(now_s)
        return decrease_multiplier(refused, calls)

    def _forget_before(self, now_s: float) -> None:
        oldest = math.floor(now_s - self.window_s)
        while self._seconds and self._seconds[0][0] <= oldest:
            self._seconds.popleft()
