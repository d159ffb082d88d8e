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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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


def slot_not_after() -> float | None:
    """The current call's last moment to go out (the running loop's clock), if it has a slot."""
    return _NOT_AFTER.get()
