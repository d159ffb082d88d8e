"""The last moment an upstream call may go out, carried with the call.

A call of the shared rate ceiling is started at its slot (service/engine/slots.py), and the
transport checks the slot's last moment where the request's bytes go out (service/wire.py):
between the start and the wire lie the loop's other ready work and aiohttp's write task, and on a
starved machine calls that went out late landed beside the next on-time ones
(tests/integration/engine/test_fleet.py saw 26 calls in a second at a ceiling of 25 with the
check made only as the call started).

The moment travels as a context variable, as asyncio.timeout's deadline does: whoever starts the
call at its slot sets it for the task that calls (`within_slot`), and the client reads it where it
sends (`slot_not_after`), with no parameter threaded through every purpose's steps between them.
A call made outside any slot has none and is never refused.

Only a call whose reservation found the calls timeline booked more than MAX_LATENESS_S ahead
carries its last moment (`last_moment`): the fleet is then at the ceiling, and a call that goes
out late crowds into the second of the calls booked after it. A reservation whose first slot was
(nearly) now found the timeline with room: checking its calls too cost a CPU-bound worker under a
ceiling it never reached half its throughput (bench/e2e.py: 376 tasks/s against 652, most calls
leaving 100-400 ms after their slots of a ceiling of 100,000 calls/s), for a breach that needs a
full second of calls booked right behind them. Those calls are still never started more than
MAX_LATENESS_S late (service/engine/slots.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from service.upstream.ratelimit import MAX_LATENESS_S

_NOT_AFTER: ContextVar[float | None] = ContextVar("phonebridge_call_not_after", default=None)


class SlotMissed(Exception):
    """Nothing of the call was sent: it would have gone out after its slot's last moment. Not an
    answer of upstream: the caller takes a new slot for it."""


@contextmanager
def within_slot(not_after: float | None) -> Iterator[None]:
    """Upstream calls made inside go out by `not_after` (the running loop's clock) or raise
    SlotMissed with nothing sent; None: whenever they can."""
    token = _NOT_AFTER.set(not_after)
    try:
        yield
    finally:
        _NOT_AFTER.reset(token)


def last_moment(earliest: float, first_in_s: float) -> float | None:
    """The last moment a call may go out at a slot whose earliest is `earliest` (the running
    loop's clock), from a reservation whose first slot was `first_in_s` ahead; None when that
    found the timeline with room (see above)."""
    if first_in_s <= MAX_LATENESS_S:
        return None
    return earliest + MAX_LATENESS_S


def slot_not_after() -> float | None:
    """The current call's last moment to go out (the running loop's clock), if it has a slot."""
    return _NOT_AFTER.get()
