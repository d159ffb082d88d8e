"""Starting a batch's calls at their slots of the shared rate ceiling (service/engine/slots.py):
every call of a batch starts, in order, spread over the ceiling's slots; without a slot, none
starts and the whole batch goes back to the schedule; a starved loop still calls, each call
holding a spare slot after its own."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from service.engine.slots import (
    MAX_FRUITLESS_RESERVATIONS,
    STARVED_SLOTS_PER_CALL,
    start_in_slots,
)
from service.upstream.gate import UpstreamGate
from service.upstream.ratelimit import SAFETY_FACTOR, SlotReservation, UpstreamRateLimiter

pytestmark = pytest.mark.usefixtures("flush_redis")

RATE = 20.0


async def test_every_call_starts_in_order_spread_over_the_slots(redis_client: Redis[Any]) -> None:
    limiter = UpstreamRateLimiter(redis_client, RATE)
    loop = asyncio.get_running_loop()
    started_at: dict[int, float] = {}

    async def call(item: int) -> int:
        started_at[item] = loop.time()
        return item * 10

    started, left = await start_in_slots(
        limiter, UpstreamGate(redis_client, limiter), list(range(6)), call
    )
    results = await asyncio.gather(*started)

    assert left == []
    assert results == [0, 10, 20, 30, 40, 50]
    assert sorted(started_at, key=started_at.__getitem__) == list(range(6))
    # Six calls take five slot intervals at least (slots are never early).
    interval_s = 1 / (RATE * SAFETY_FACTOR)
    assert started_at[5] - started_at[0] >= 5 * interval_s * 0.9


class NoSlots(UpstreamRateLimiter):
    async def reserve_calls(self, count: int) -> SlotReservation:
        raise ConnectionError("redis away")


async def test_without_a_slot_no_call_starts_and_the_batch_goes_back(
    redis_client: Redis[Any],
) -> None:
    limiter = NoSlots(redis_client, RATE)
    calls: list[int] = []

    async def call(item: int) -> None:
        calls.append(item)

    started, left = await start_in_slots(
        limiter, UpstreamGate(redis_client, limiter), [1, 2, 3], call
    )

    assert (started, left, calls) == ([], [1, 2, 3], [])


class StarvedLoop(UpstreamRateLimiter):
    """Each reservation's answer reaches the caller only after the event loop was blocked for
    longer than a slot may be late, as on a starved worker."""

    def __init__(self, redis: Redis[Any], rate: float) -> None:
        super().__init__(redis, rate)
        self.wanted: list[int] = []

    async def reserve_calls(self, count: int) -> SlotReservation:
        self.wanted.append(count)
        reservation = await super().reserve_calls(count)
        time.sleep(0.06)  # blocking the loop is the point
        return reservation


async def test_a_starved_loop_still_calls_each_with_a_spare_slot_after_its_own(
    redis_client: Redis[Any],
) -> None:
    limiter = StarvedLoop(redis_client, RATE)
    calls: list[int] = []

    async def call(item: int) -> None:
        calls.append(item)

    started, left = await start_in_slots(limiter, UpstreamGate(redis_client, limiter), [1, 2], call)
    await asyncio.gather(*started)

    assert (calls, left) == ([1, 2], [])
    # Each call comes after MAX_FRUITLESS_RESERVATIONS whole-batch reservations that started
    # nothing, and takes its own slot and a spare one.
    fruitless = MAX_FRUITLESS_RESERVATIONS
    assert limiter.wanted == [2] * fruitless + [STARVED_SLOTS_PER_CALL] + [1] * fruitless + [
        STARVED_SLOTS_PER_CALL
    ]
