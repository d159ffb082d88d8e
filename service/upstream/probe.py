"""The probe timer of the global pause: while polling is paused, one call every
PHONEBRIDGE_PAUSE_PROBE_S (across all schedulers) checks whether upstream accepts us again."""

from __future__ import annotations

from typing import Any, Final

from redis.asyncio import Redis

PROBE_KEY: Final = "phonebridge:upstream:pause:probe"


async def arm_probe_timer(redis: Redis[Any], probe_s: float) -> None:
    """Start (or restart) the wait before the next probe: called when an account problem is seen,
    so the answer that opened the pause is not followed at once by a probe."""
    await redis.set(PROBE_KEY, "1", px=max(1, round(probe_s * 1000)))


async def take_probe_turn(redis: Redis[Any], probe_s: float) -> bool:
    """True for exactly one caller per probe interval."""
    return bool(await redis.set(PROBE_KEY, "1", px=max(1, round(probe_s * 1000)), nx=True))


async def give_back_probe_turn(redis: Redis[Any]) -> None:
    """The turn found nothing to probe with; the next tick may try again."""
    await redis.delete(PROBE_KEY)
