"""May this process call upstream right now? The global pause and a Retry-After block, as read
from Redis at most every `refresh_s` (a worker asks before every call; Redis need not answer
thousands of times a second), and as learned from this process's own answers at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from service.upstream.pause import read_pause
from service.upstream.ratelimit import UpstreamRateLimiter

DEFAULT_REFRESH_S = 0.1


@dataclass(frozen=True)
class GateState:
    paused: bool
    blocked_for_s: float


class UpstreamGate:
    def __init__(
        self,
        redis: Redis[Any],
        limiter: UpstreamRateLimiter,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._limiter = limiter
        self._refresh_s = refresh_s
        self._monotonic = monotonic
        self._paused = False
        self._blocked_until = 0.0
        self._read_at: float | None = None
        self._refreshing = asyncio.Lock()

    async def state(self) -> GateState:
        # One refresh at a time: a whole batch asking at once must not open a Redis connection
        # each, nor queue behind the one refresh; while it runs, the others go on with the last
        # state read (one refresh interval old at most).
        if self._stale() and not (self._refreshing.locked() and self._read_at is not None):
            async with self._refreshing:
                if self._stale():
                    pause = await read_pause(self._redis)
                    status = await self._limiter.status()
                    now = self._monotonic()
                    self._paused = pause is not None
                    self._blocked_until = now + status.blocked_for_s
                    self._read_at = now
        return GateState(self._paused, max(0.0, self._blocked_until - self._monotonic()))

    def last_state(self) -> GateState:
        """The state as last read (or learned), without asking Redis: what a call checks just
        before it is sent, so that no Redis round trip sits between a call's rate slot and the
        call (the refresh is the slot walker's, before it waits for the slot)."""
        return GateState(self._paused, max(0.0, self._blocked_until - self._monotonic()))

    def _stale(self) -> bool:
        return self._read_at is None or self._monotonic() - self._read_at >= self._refresh_s

    def believes_paused(self) -> bool:
        return self._paused

    def learn_paused(self, paused: bool) -> None:
        self._paused = paused

    def learn_blocked(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, self._monotonic() + seconds)
