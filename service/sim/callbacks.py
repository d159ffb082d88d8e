"""Upstream's completion callback, simulated: a check submitted with `callback` gets an HTTP GET
with `request_id`, `phone_number` (masked), `phone_status` and `task_id` when its answer becomes
ready (its script's delay after submission), as AccuAuth documents.

Like a third party, it can be told to misbehave, per callback (one draw each from the seeded
generator): `lose` it, send it `delay_s` late, `duplicate` it, or `forge` one (an extra callback
sent at once, claiming a result the check does not have yet). Every callback planned is logged
with what became of it (`GET /_sim/callbacks/log`).

`plan_callbacks` decides (pure, on the simulator's loop); `CallbackSender` sends (I/O, the same
loop): the simulator's state does no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT_S = 5.0
FORGED_AFTER_S = 0.05


@dataclass(slots=True)
class CallbackSettings:
    lose: float = 0.0
    delay_s: float = 0.0
    duplicate: float = 0.0
    forge: float = 0.0

    def view(self) -> dict[str, float]:
        return {
            "lose": self.lose,
            "delay_s": self.delay_s,
            "duplicate": self.duplicate,
            "forge": self.forge,
        }


@dataclass(slots=True)
class PlannedCallback:
    """One GET to make at `at` (wall-clock seconds), or a lost one (never sent)."""

    task_id: str
    url: str
    params: dict[str, str]
    at: float
    kind: str  # "callback", "duplicate", "forged", "lost"
    sent_at: float | None = None
    status: int | None = None
    error: str | None = None

    def view(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "at": self.at,
            "sent_at": self.sent_at,
            "status": self.status,
            "error": self.error,
        }


@dataclass(slots=True)
class CallbackLog:
    planned: list[PlannedCallback] = field(default_factory=list)


def plan_callbacks(
    settings: CallbackSettings,
    rand: Callable[[], float],
    *,
    task_id: str,
    url: str,
    ready_at: float,
    now: float,
    params: dict[str, str],
) -> list[PlannedCallback]:
    """The callbacks one check gets: its own (or a lost one), maybe a duplicate and a forgery."""
    planned: list[PlannedCallback] = []
    if settings.forge and rand() < settings.forge:
        planned.append(PlannedCallback(task_id, url, params, now + FORGED_AFTER_S, "forged"))
    at = ready_at + settings.delay_s
    if settings.lose and rand() < settings.lose:
        planned.append(PlannedCallback(task_id, url, params, at, "lost"))
        return planned
    planned.append(PlannedCallback(task_id, url, params, at, "callback"))
    if settings.duplicate and rand() < settings.duplicate:
        planned.append(PlannedCallback(task_id, url, params, at + 0.01, "duplicate"))
    return planned


class CallbackSender:
    """Sends planned callbacks at their time from the simulator's event loop."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, callbacks: list[PlannedCallback]) -> None:
        for callback in callbacks:
            if callback.kind == "lost":
                continue
            task = asyncio.get_running_loop().create_task(self._send_at(callback))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_at(self, callback: PlannedCallback) -> None:
        delay = callback.at - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=CALLBACK_TIMEOUT_S, trust_env=False)
        callback.sent_at = self._clock()
        try:
            response = await self._client.get(callback.url, params=callback.params)
            callback.status = response.status_code
        except httpx.HTTPError as error:
            callback.error = type(error).__name__

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
