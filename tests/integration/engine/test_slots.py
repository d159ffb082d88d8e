"""Starting a batch's calls at their slots of the shared rate ceiling (service/engine/slots.py):
every call of a batch starts, in order, spread over the ceiling's slots; without a slot, none
starts and the whole batch goes back to the schedule; a loop late for one slot takes the
reservation's next slots it can still make; a starved loop still calls, each call holding a spare
slot after its own; when the timeline is booked ahead, a call that reaches the wire too late for
its slot sends nothing and goes again as a starved loop's call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from service.engine.slots import (
    MAX_FRUITLESS_RESERVATIONS,
    STARVED_SLOTS_PER_CALL,
    NoSlot,
    start_in_slots,
)
from service.upstream.call_slot import SlotMissed, slot_not_after
from service.upstream.gate import GateState, UpstreamGate
from service.upstream.ratelimit import (
    MAX_LATENESS_S,
    SAFETY_FACTOR,
    SlotReservation,
    UpstreamRateLimiter,
)

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


class CountingLimiter(UpstreamRateLimiter):
    """The real limiter, recording how many slots each reservation asked for."""

    def __init__(self, redis: Redis[Any], rate: float) -> None:
        super().__init__(redis, rate)
        self.wanted: list[int] = []

    async def reserve_calls(self, count: int) -> SlotReservation:
        self.wanted.append(count)
        return await super().reserve_calls(count)


class BusyOnce(UpstreamGate):
    """The loop is blocked once, before the first slot, for longer than a slot may be late and
    shorter than an interval beyond that: the first slot is missed, the second can be made."""

    def __init__(self, redis: Redis[Any], limiter: UpstreamRateLimiter, busy_s: float) -> None:
        super().__init__(redis, limiter)
        self._busy_s: float | None = busy_s

    async def state(self) -> GateState:
        if self._busy_s is not None:
            time.sleep(self._busy_s)  # blocking the loop is the point
            self._busy_s = None
        return await super().state()


async def test_a_loop_late_for_one_slot_takes_the_next_slots_of_its_reservation(
    redis_client: Redis[Any],
) -> None:
    limiter = CountingLimiter(redis_client, RATE)
    interval_s = 1 / (RATE * SAFETY_FACTOR)
    busy_s = MAX_LATENESS_S + interval_s / 2
    gate = BusyOnce(redis_client, limiter, busy_s)
    loop = asyncio.get_running_loop()
    started_at: dict[int, float] = {}

    async def call(item: int) -> None:
        started_at[item] = loop.time()

    began = loop.time()
    started, left = await start_in_slots(limiter, gate, [1, 2, 3], call)
    await asyncio.gather(*started)

    assert left == []
    assert sorted(started_at, key=started_at.__getitem__) == [1, 2, 3]
    # The three slots reserved seat items 1 and 2 (the first slot went unused); only item 3
    # needs a fresh one, instead of the whole batch.
    assert limiter.wanted == [3, 1]
    # Item 1 went at the second slot, not before it.
    assert started_at[1] - began >= interval_s * 0.9


class StarvedLoop(CountingLimiter):
    """Each reservation's answer reaches the caller only after the event loop was blocked for
    longer than a slot may be late, as on a starved worker."""

    async def reserve_calls(self, count: int) -> SlotReservation:
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


class MissesAtTheWire:
    """A call whose bytes reach the wire after its slot's last moment `misses` times (it raises
    SlotMissed, as the client does, having sent nothing), and what each attempt was given."""

    def __init__(self, misses: int) -> None:
        self.misses = misses
        self.attempts: list[tuple[int, float | None]] = []

    async def call(self, item: int) -> int:
        not_after = slot_not_after()
        self.attempts.append((item, not_after))
        if item == 1 and not_after is not None and self.misses > 0:
            self.misses -= 1
            raise SlotMissed
        return item


async def book_ahead(redis: Redis[Any]) -> None:
    """Another worker books the next slot: the calls timeline is booked more than
    MAX_LATENESS_S ahead, as when the fleet is at the ceiling."""
    await UpstreamRateLimiter(redis, RATE).reserve_calls(1)
    assert 1 / (RATE * SAFETY_FACTOR) > MAX_LATENESS_S


async def test_calls_from_a_timeline_with_room_carry_no_last_moment(
    redis_client: Redis[Any],
) -> None:
    limiter = UpstreamRateLimiter(redis_client, RATE)
    wire = MissesAtTheWire(misses=0)

    started, _ = await start_in_slots(
        limiter, UpstreamGate(redis_client, limiter), [1, 2], wire.call
    )
    await asyncio.gather(*started)

    # The first slot was now: only their start is held to the lateness, not their wire.
    assert wire.attempts == [(1, None), (2, None)]


async def test_a_call_too_late_at_the_wire_goes_again_as_a_starved_call(
    redis_client: Redis[Any],
) -> None:
    limiter = CountingLimiter(redis_client, RATE)
    wire = MissesAtTheWire(misses=100)
    loop = asyncio.get_running_loop()
    await book_ahead(redis_client)

    began = loop.time()
    started, left = await start_in_slots(
        limiter, UpstreamGate(redis_client, limiter), [1, 2, 3], wire.call
    )
    results = await asyncio.gather(*started)

    assert (results, left) == ([1, 2, 3], [])
    # Item 1's slot was lost at the wire: it went again at once, with its slot and a spare one.
    assert limiter.wanted == [3, STARVED_SLOTS_PER_CALL]
    assert [item for item, _ in wire.attempts] == [1, 2, 3, 1]
    # Every first attempt carried its slot's last moment, in the slots' order; the starved
    # one had none (a loop too busy to be on time still calls).
    moments = [not_after for _, not_after in wire.attempts[:3]]
    assert all(moment is not None and moment > began for moment in moments)
    assert moments == sorted(moments)  # type: ignore[type-var]
    assert wire.attempts[3][1] is None


class FirstReservationOnly(CountingLimiter):
    """Redis answers the first reservation, then is away."""

    async def reserve_calls(self, count: int) -> SlotReservation:
        if self.wanted:
            raise ConnectionError("redis away")
        return await super().reserve_calls(count)


async def test_a_call_that_missed_its_slot_at_the_wire_and_gets_no_new_one_raises_no_slot(
    redis_client: Redis[Any],
) -> None:
    limiter = FirstReservationOnly(redis_client, RATE)
    wire = MissesAtTheWire(misses=1)
    await book_ahead(redis_client)

    started, left = await start_in_slots(
        limiter, UpstreamGate(redis_client, limiter), [1, 2], wire.call
    )
    results = await asyncio.gather(*started, return_exceptions=True)

    assert left == []
    assert isinstance(results[0], NoSlot)
    assert results[1] == 2
