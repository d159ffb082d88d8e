"""Starting a batch's calls at their slots of the shared rate ceiling.

One loop walks the batch's slots in order. A slot's time is only known to within the
reservation's round trip (Redis counted from when it ran the script): a call waits for the latest
the slot can be, so it is never early, and is late when it starts more than MAX_LATENESS_S after
the earliest. A late call could land beside the next slot's on-time call, so a late slot stays
unused and the call takes the reservation's next slot it can still make; what the reservation
cannot seat takes fresh slots (one Redis call). A reservation whose round trip alone was too slow
(a starved event loop) seats nothing and is given up at once. (Giving up the whole reservation at
its first late slot wasted 14% of the slots a loaded worker reserved, bench/jobs.py part (a) at a
cap of 20 marked items; 4.6% once only the late slots went unused.)

After MAX_FRUITLESS_RESERVATIONS in a row that start nothing, the next call goes at its slot
however late, so a starved loop still polls; such a call reserves the slot after its own too and
leaves it unused, so that being up to an interval late cannot put it beside another worker's
on-time call (the ceiling holds in every sliding second at half the rate, until a call starts on
time again). (A poll is not handed back when the loop runs it late after this check: that costs a
claim cycle of latency under load, which the hinted polls cannot afford.)

A call started on time can still reach the wire late (the loop's other ready work, aiohttp's write
task, a connection to open), so when the timeline was booked ahead the slot's last moment goes
with it and is checked again as its bytes go out (service/upstream/call_slot.py). A call too late
there sends nothing: its loop is too busy to be on time, so it goes again at once as a starved
loop's call (its slot and a spare one, no last moment), and is always sent. Should no slot be had
for it (the ceiling's Redis away), its task raises NoSlot: nothing was sent, and the caller gives
it back to the schedule as an item never started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from service.observability.metrics import record_call_late_at_wire, record_call_slots
from service.upstream.call_slot import PlacedSlots, SlotMissed, within_slot
from service.upstream.gate import UpstreamGate
from service.upstream.ratelimit import UpstreamRateLimiter

log = logging.getLogger(__name__)

# Reservations in a row whose every slot came too late before a batch calls anyway: each costs
# unused slots, and a starved loop must still poll.
MAX_FRUITLESS_RESERVATIONS = 3
# What a call made late on purpose (a starved loop) reserves: its slot and the next, left unused.
STARVED_SLOTS_PER_CALL = 2

Item = TypeVar("Item")
Result = TypeVar("Result")


class NoSlot(Exception):
    """A call that missed its slot at the wire got no new one: nothing of it was sent."""


async def start_in_slots(
    limiter: UpstreamRateLimiter,
    gate: UpstreamGate,
    items: list[Item],
    call: Callable[[Item], Coroutine[Any, Any, Result]],
    *,
    starved: bool = False,
) -> tuple[list[asyncio.Task[Result]], list[Item]]:
    """Start `call(item)` for each item at its slot. Returns the started calls (in the order of
    `items`; one whose call missed its slot at the wire and got no new one raises NoSlot) and the
    items never started (no slot could be had: they go back to the schedule). `starved`: start
    them as a starved loop's calls from the first."""
    loop = asyncio.get_running_loop()
    started: list[asyncio.Task[Result]] = []

    async def at_slot(item: Item, not_after: float | None) -> Result:
        with within_slot(not_after):
            try:
                return await call(item)
            except SlotMissed:
                pass
        # Nothing was sent, by a loop too busy to be on time: again, as a starved loop's call.
        log.info("poll.slot_missed_at_wire")
        record_call_late_at_wire()
        again, unstarted = await start_in_slots(limiter, gate, [item], call, starved=True)
        if unstarted:
            raise NoSlot
        return await again[0]

    fruitless = MAX_FRUITLESS_RESERVATIONS if starved else 0
    index = 0
    while index < len(items):
        # A loop that stays starved still polls: after a few fruitless reservations the next
        # call goes at its slot however late (as it must, or nothing would be polled).
        strict = fruitless < MAX_FRUITLESS_RESERVATIONS
        if not strict and not starved:
            # (A call missed at the wire, started starved on purpose, logged its own line.)
            log.warning("poll.slots_late", extra={"tasks": len(items) - index})
        sent_at = loop.time()
        try:
            # Starved: one call at a time, each taking two slots and using the first, so that a
            # call up to an interval late still cannot land beside the next slot's call.
            wanted = len(items) - index if strict else STARVED_SLOTS_PER_CALL
            reservation = await limiter.reserve_calls(wanted)
        except Exception as error:
            # Without a slot there is no call; the rest goes back to the schedule.
            log.error("poll.no_rate_slot", extra={"error_type": type(error).__name__})
            return started, items[index:]
        placed = PlacedSlots.of(reservation, sent_at, loop.time())
        record_call_slots(reservation.count)
        fruitless += 1
        if strict and placed.uncertain:
            continue
        for slot in range(reservation.count):
            # Refresh the pause and block from Redis (when stale) before waiting for the slot,
            # not between the slot and the call.
            await gate.state()
            delay = placed.start_at(slot) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if strict and placed.too_late(slot, loop.time()):
                # Too late for this slot: it stays unused. The next slots of the reservation may
                # still be on time (a loop busy for a moment); the rest get fresh ones after.
                continue
            # Checked again where its bytes go out, when the timeline was booked ahead.
            not_after = placed.last_moment(slot) if strict else None
            started.append(asyncio.create_task(at_slot(items[index], not_after)))
            index += 1
            fruitless = 0
            if not strict:
                break
    return started, []
