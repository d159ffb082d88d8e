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

Only a call whose reservation found the calls timeline booked more than MAX_LATENESS_S ahead carries
its last moment (`PlacedSlots.last_moment`): the fleet is then at the ceiling, and a call that goes
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
from dataclasses import dataclass

from service.upstream.ratelimit import MAX_LATENESS_S, SlotReservation

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


@dataclass(frozen=True)
class PlacedSlots:
    """A reservation's slots on the running loop's clock. Redis counted them from when it ran the
    script, which lies between the request's sending and the answer's arrival, so a slot is known
    only to within that round trip: a call waits for the latest it can be (never early) and is
    late when it starts, or leaves, more than MAX_LATENESS_S after the earliest. The one
    placement polls, scheduled submits (service/engine/slots.py) and interactive submits
    (service/checks/submit_slot.py) share."""

    reservation: SlotReservation
    earliest: float
    latest: float

    @classmethod
    def of(cls, reservation: SlotReservation, sent_at: float, answered_at: float) -> PlacedSlots:
        """`reservation`, asked for at `sent_at` and answered at `answered_at` (loop times)."""
        first_in_s = reservation.first_in_s
        return cls(reservation, sent_at + first_in_s, answered_at + first_in_s)

    @property
    def uncertain(self) -> bool:
        """The round trip alone was too slow: no slot of it can be known to be on time."""
        return self.latest - self.earliest > MAX_LATENESS_S

    def start_at(self, slot: int) -> float:
        """When a call at `slot` (0 the first) starts: the latest the slot can be."""
        return self.latest + slot * self.reservation.interval_s

    def deadline(self, slot: int) -> float:
        """The latest a call at `slot` may start, and leave: MAX_LATENESS_S after the earliest
        the slot can be."""
        return self.earliest + slot * self.reservation.interval_s + MAX_LATENESS_S

    def too_late(self, slot: int, now: float) -> bool:
        """Whether a call starting at `now` is too late for `slot`."""
        return now > self.deadline(slot)

    def last_moment(self, slot: int) -> float | None:
        """The last moment a call at `slot` may leave; None when the reservation found the calls
        timeline with room (see the module's docstring)."""
        if self.reservation.first_in_s <= MAX_LATENESS_S:
            return None
        return self.deadline(slot)


def slot_not_after() -> float | None:
    """The current call's last moment to go out (the running loop's clock), if it has a slot."""
    return _NOT_AFTER.get()
