"""An interactive submit's call at its slot of the shared rate ceiling.

Nothing is sent while upstream is paused, nor when the check's slot is more than MAX_SLOT_WAIT_S
away (503 RATE_CEILING: a client waiting on its request would rather retry). A slot is known only
to within the reservation's round trip: the call waits for the latest the slot can be and, when
the calls timeline was booked ahead, must go out within MAX_LATENESS_S of the earliest, checked
where its bytes leave (service/upstream/call_slot.py, the rule polls and scheduled submits keep
too). A call that would leave too late sends nothing and takes a new slot, at most
SLOT_ATTEMPTS slots and MAX_SLOT_WAIT_S of waiting in all, so the submission's lease (which
counts on that wait) still holds when the call goes; then 503 RATE_CEILING, nothing sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from service.checks.submit_answers import (
    SubmitAnswer,
    no_credentials_answer,
    paused_answer,
    rate_ceiling_answer,
    unavailable_answer,
)
from service.observability.metrics import record_call_late_at_wire, record_call_slots
from service.upstream.call_slot import PlacedSlots, SlotMissed, within_slot
from service.upstream.client import SubmitCall
from service.upstream.pause import read_pause
from service.upstream.ratelimit import UpstreamRateLimiter

log = logging.getLogger(__name__)

# A submit waits at most this long for its slot of the rate ceiling before answering 503.
MAX_SLOT_WAIT_S = 5.0
# Slots a submit may take whose call would reach the wire too late (nothing sent) before it
# answers 503 RATE_CEILING, nothing sent either.
SLOT_ATTEMPTS = 3


async def submit_at_slot(
    redis: Redis[Any],
    limiter: UpstreamRateLimiter,
    pause_probe_s: float,
    call: Callable[[], Awaitable[SubmitCall]] | None,
) -> SubmitCall | SubmitAnswer:
    """`call()` at the check's slot, or the refusal with nothing sent (`call` None: no upstream
    credentials, refused once a slot is had, as before any call)."""
    loop = asyncio.get_running_loop()
    wait_until = loop.time() + MAX_SLOT_WAIT_S
    for _ in range(SLOT_ATTEMPTS):
        try:
            pause = await read_pause(redis)
            if pause is not None:
                return paused_answer(pause.reason, pause_probe_s)
            sent_at = loop.time()
            reservation = await limiter.reserve_calls(1)
            placed = PlacedSlots.of(reservation, sent_at, loop.time())
            record_call_slots(reservation.count)
            # Background claims (check jobs) yield what interactive submits take.
            await limiter.charge_interactive(1)
        except Exception as error:
            log.error("check.no_rate_slot", extra={"error_type": type(error).__name__})
            return unavailable_answer("the shared rate ceiling (Redis) does not answer")
        start_at = placed.start_at(0)
        if start_at > wait_until:
            return rate_ceiling_answer(reservation.first_in_s)
        if call is None:
            return no_credentials_answer()
        delay = start_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            with within_slot(placed.last_moment(0)):
                return await call()
        except SlotMissed:
            # Nothing sent: the loop kept the call past its slot. A new slot.
            log.info("check.slot_missed")
            record_call_late_at_wire()
    return rate_ceiling_answer(0.0)
