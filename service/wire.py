"""A paced request goes out by its last moment or not at all, checked as its body is written.

Both paced senders start a request at its moment (an upstream call at its slot of the rate ceiling,
service/engine/slots.py; a webhook request at its subscription's turn, service/webhooks/sender.py),
but what lies between that start and the request's first byte on the wire (the loop's other ready
work, a connection to open, aiohttp's write task) takes tens of milliseconds on a starved machine,
and requests that go out late go out together, beside the next on-time ones. aiohttp holds a
request's headers back to send them with its body, from a task of its own, so the body's write is
the moment the request's first bytes leave: checked there, a request too late sends nothing (not
even its headers; its connection is closed) and the sender takes a new moment instead.

tests/integration/webhooks/test_sender_turns.py and tests/integration/upstream/test_call_slot.py
prove, with a raw server, that nothing of a late request reaches it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp


class TooLateForWire(Exception):
    """The request would have gone out after its last moment: nothing of it was sent."""


class BodyNotAfter(aiohttp.BytesPayload):
    """A request body written (with the headers aiohttp held back for it) only up to `not_after`
    (the running loop's clock); later, the write raises TooLateForWire and nothing is sent."""

    def __init__(self, body: bytes, not_after: float) -> None:
        super().__init__(body, content_type="application/json")
        self._not_after = not_after

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        if asyncio.get_running_loop().time() > self._not_after:
            raise TooLateForWire
        await super().write_with_length(writer, content_length)


def too_late_for_wire(error: BaseException) -> bool:
    """Whether aiohttp's error (it wraps what a body's write raises) is TooLateForWire."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, TooLateForWire):
            return True
        cause = cause.__cause__
    return False
