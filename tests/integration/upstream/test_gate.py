"""The upstream gate against real Redis: what a worker believes about the pause, how fresh."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from service.clock import utc_now
from service.upstream.gate import UpstreamGate
from service.upstream.pause import open_pause
from service.upstream.ratelimit import UpstreamRateLimiter

pytestmark = pytest.mark.usefixtures("flush_redis")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate_on(redis_client: Redis[Any], clock: ManualClock) -> UpstreamGate:
    limiter = UpstreamRateLimiter(redis_client, 50)
    return UpstreamGate(redis_client, limiter, refresh_s=0.1, monotonic=clock)


async def test_a_pause_is_seen_once_the_last_reading_is_older_than_the_refresh_interval(
    redis_client: Redis[Any],
) -> None:
    clock = ManualClock()
    gate = gate_on(redis_client, clock)
    assert not (await gate.state()).paused
    await open_pause(redis_client, "KEY_EXPIRED", utc_now())
    assert not (await gate.state()).paused, "within the interval the last reading holds"
    clock.now += 0.1
    assert (await gate.state()).paused


async def test_callers_during_a_refresh_go_on_with_the_last_reading_instead_of_queueing(
    redis_client: Redis[Any],
) -> None:
    clock = ManualClock()
    gate = gate_on(redis_client, clock)
    await gate.state()
    await open_pause(redis_client, "KEY_EXPIRED", utc_now())
    clock.now += 0.1
    # The first caller starts the refresh (and waits on Redis); the second, arriving meanwhile,
    # gets the reading from before without waiting for it.
    refreshing, meanwhile = await asyncio.gather(gate.state(), gate.state())
    assert refreshing.paused
    assert not meanwhile.paused
    assert (await gate.state()).paused
