"""The global polling pause, opened by an account problem upstream (UNAUTHORIZED, KEY_EXPIRED,
NO_PERMISSION, OUT_OF_QUOTA, NOT_FOUND) and closed by a successful probe.

It lives in Redis because it is a short-lived, rebuildable flag: if Redis is flushed the pause is
forgotten, the next poll meets the same account error and opens it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from service.upstream.probe import arm_probe_timer

log = logging.getLogger(__name__)

PAUSE_KEY = "phonebridge:upstream:pause"


@dataclass(frozen=True)
class PauseState:
    reason: str
    since: datetime


async def open_pause(redis: Redis[Any], reason: str, now: datetime) -> bool:
    """Open the pause unless it is already open; True when this call opened it.

    `since` keeps the time the pause first opened; the reason follows the latest answer.
    """
    opened = bool(await redis.hsetnx(PAUSE_KEY, "since", now.isoformat()))
    await redis.hset(PAUSE_KEY, "reason", reason)
    return opened


async def pause_for_account_problem(
    redis: Redis[Any], code: str, request_id: str | None, now: datetime, probe_s: float
) -> None:
    """An account problem upstream (a poll's or a submit's answer): the probe timer restarts, so
    the answer that opened the pause is not followed at once by a probe, and the pause opens;
    logged once, by the call that opened it."""
    await arm_probe_timer(redis, probe_s)
    if await open_pause(redis, code, now):
        log.error("upstream.paused", extra={"reason": code, "request_id": request_id})


async def close_pause(redis: Redis[Any]) -> bool:
    """Close the pause; True when one was open."""
    return bool(await redis.delete(PAUSE_KEY))


async def read_pause(redis: Redis[Any]) -> PauseState | None:
    values = await redis.hgetall(PAUSE_KEY)
    if not values:
        return None
    decoded = {_text(k): _text(v) for k, v in values.items()}
    try:
        since = datetime.fromisoformat(decoded["since"])
    except (KeyError, ValueError):
        return None
    return PauseState(reason=decoded.get("reason", "UNKNOWN"), since=since)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
