"""When each API key was last used, recorded cheaply: at most one write a minute per key and API
process, off the request's path, and guarded in SQL so that several processes stamping the same
key in the same minute write one new row version between them (store/clients.py)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

log = logging.getLogger(__name__)

STAMP_INTERVAL_S: Final = 60.0
MAX_TRACKED_KEYS: Final = 10_000


class KeyUsage:
    def __init__(
        self,
        interval_s: float = STAMP_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._stamped: dict[int, float] = {}
        self._writes: set[asyncio.Task[None]] = set()

    def due(self, key_id: int) -> bool:
        """True (once per interval and key) when this use should be written down; the caller
        then hands the write to `spawn`."""
        now = self._monotonic()
        if now - self._stamped.get(key_id, -math.inf) < self.interval_s:
            return False
        if len(self._stamped) >= MAX_TRACKED_KEYS:
            self._stamped = {k: t for k, t in self._stamped.items() if now - t < self.interval_s}
        self._stamped[key_id] = now
        return True

    def spawn(self, write: Coroutine[Any, Any, None]) -> None:
        """Run the write in the background; a failure is logged and skipped (the next one comes
        an interval later), never the request's problem."""
        task = asyncio.create_task(_logged(write))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def drain(self) -> None:
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)


async def _logged(write: Coroutine[Any, Any, None]) -> None:
    try:
        await write
    except Exception as error:
        log.warning("api_key.last_used_not_recorded", extra={"error_type": type(error).__name__})
