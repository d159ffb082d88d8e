"""Where a remote clock (Redis's, which times the shared rate ceiling's slots) stands against
this process's own, learnt from the round trips that read it. Pure: no I/O, no clock of its own.

A read of the remote clock made between our `sent` and `received` says the offset (remote minus
local) lies in [remote - received, remote - sent]: a window as wide as that round trip. Every read
is true, so the reads of the last WINDOW_S together bound the offset to their intersection, as
narrow as the fastest round trip among them. A slot's local time is then known to within that,
however slow the round trip that reserved it: a reply that reached a busy event loop late no
longer makes its slots uncertain (service/engine/slots.py).

Reads older than WINDOW_S are forgotten, so the two clocks' drift (a few ppm, at most 500 ppm
while NTP slews) moves the bounds by well under a millisecond. A clock stepped by more than the
window's width makes the reads disagree (an empty intersection): only the newest is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

WINDOW_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class OffsetBounds:
    """The offset (remote minus local) lies in [low, high]."""

    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low


class ClockOffset:
    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        # (received, low, high) of each read of the window.
        self._reads: list[tuple[float, float, float]] = []

    def observe(self, sent: float, received: float, remote: float) -> OffsetBounds:
        """A read of the remote clock (`remote`) made between local `sent` and `received`; the
        bounds every read of the window now gives."""
        if received < sent:
            raise ValueError("a read cannot be received before it is sent")
        newest = (received, remote - received, remote - sent)
        since = received - self._window_s
        reads = [read for read in self._reads if read[0] >= since]
        reads.append(newest)
        low = max(read[1] for read in reads)
        high = min(read[2] for read in reads)
        if low > high:
            # The reads disagree: a clock was stepped. Only the newest is known to be true.
            reads = [newest]
            low, high = newest[1], newest[2]
        self._reads = reads
        return OffsetBounds(low, high)
