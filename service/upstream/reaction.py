"""A process's one reaction to what upstream answers, for polls and submits alike.

Every answer is counted in the process's refusal window; what it changes for everyone is decided
by `service.domain.refusals.reaction_to` and carried out here: the global pause opened (with its
probe timer restarted) or closed, the Retry-After block set in Redis and learnt by this process's
gate at once, the shared rate lowered by the window's share of refused calls.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from service.config import Settings
from service.domain.answers import Outcome, OutcomeKind
from service.domain.refusals import RefusalWindow, reaction_to
from service.upstream.gate import UpstreamGate
from service.upstream.pause import close_pause, pause_for_account_problem
from service.upstream.ratelimit import UpstreamRateLimiter

log = logging.getLogger(__name__)


class UpstreamReaction:
    """The pause, the gate, the rate ceiling and the refusal window of one process, as one answer
    moves them. `limiter` and `gate` are the process's own, which its calls also wait on."""

    def __init__(
        self,
        redis: Redis[Any],
        limiter: UpstreamRateLimiter,
        gate: UpstreamGate,
        *,
        pause_probe_s: float,
    ) -> None:
        self._redis = redis
        self.limiter = limiter
        self.gate = gate
        self._pause_probe_s = pause_probe_s
        self._refusals = RefusalWindow()

    @classmethod
    def from_settings(cls, redis: Redis[Any], settings: Settings) -> UpstreamReaction:
        """A process's reaction, with its own view of the rate ceiling and the pause."""
        limiter = UpstreamRateLimiter(redis, settings.upstream_max_rps)
        return cls(
            redis, limiter, UpstreamGate(redis, limiter), pause_probe_s=settings.pause_probe_s
        )

    async def react(self, outcome: Outcome, now: datetime, *, probe: bool = False) -> None:
        """What one answer means for every call: pause, resume, stop for a while, slow down.
        `probe` marks the call the scheduler sends while polling is paused."""
        self._refusals.record(time.monotonic(), refused=outcome.kind is OutcomeKind.RATE_LIMITED)
        reaction = reaction_to(outcome, probe=probe, believed_paused=self.gate.believes_paused())
        if reaction.pause_reason is not None:
            self.gate.learn_paused(True)
            await pause_for_account_problem(
                self._redis, reaction.pause_reason, outcome.request_id, now, self._pause_probe_s
            )
            return
        if reaction.resume:
            self.gate.learn_paused(False)
            if await close_pause(self._redis):
                log.warning("upstream.resumed", extra={"request_id": outcome.request_id})
        if reaction.block_for_s is not None:
            # This process stops at once; the others as soon as Redis tells them.
            self.gate.learn_blocked(reaction.block_for_s)
            await self.limiter.block_for(reaction.block_for_s)
        if reaction.slow_down:
            factor = await self.limiter.slow_down(self._refusals.multiplier(time.monotonic()))
            log.warning(
                "upstream.rate_limited",
                extra={
                    "rate_factor": factor,
                    "retry_after_s": outcome.retry_after_s,
                    "request_id": outcome.request_id,
                },
            )
