"""Upstream's completion callback, simulated: a check submitted with `callback` gets an HTTP GET
with `request_id`, `phone_number` (masked), `phone_status` and `task_id` when its answer becomes
ready (its script's delay after submission), as AccuAuth documents.

Like a third party, it can be told to misbehave, per callback (one draw each from the seeded
generator): `lose` it, send it `delay_s` late, `duplicate` it, or `forge` one (an extra callback
sent at once, claiming a result the check does not have yet). The newest CALLBACK_LOG_KEPT
callbacks planned are logged with what became of it, and every one planned is counted by kind
(`GET /_sim/callbacks/log`): a job's stream of 100,000 submits, or a demo left running for days,
does not grow the simulator without bound.

`plan_callbacks` decides (pure, on the simulator's loop); `CallbackSender` sends (I/O, the same
loop): the simulator's state does no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT_S = 5.0
# GETs in flight at once, at most (a receiver that answers in 5 ms takes 6,400 a second).
MAX_CALLBACKS_IN_FLIGHT = 32
FORGED_AFTER_S = 0.05
# Callbacks whose fate the log keeps (about 0.5 KiB each): bench/jobs.py's stream of 20,000 is
# logged whole.
CALLBACK_LOG_KEPT = 20_000


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
    """The newest `kept` callbacks planned, oldest first, and a count of all of them by kind."""

    kept: int = CALLBACK_LOG_KEPT
    recent: deque[PlannedCallback] = field(init=False)
    planned_by_kind: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.kept)

    def add(self, callbacks: Iterable[PlannedCallback]) -> None:
        for callback in callbacks:
            self.recent.append(callback)
            self.planned_by_kind[callback.kind] += 1

    def view(self) -> dict[str, Any]:
        planned = sum(self.planned_by_kind.values())
        return {
            "callbacks": [callback.view() for callback in self.recent],
            "planned": planned,
            "planned_by_kind": dict(self.planned_by_kind),
            "dropped": planned - len(self.recent),
        }


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
    """Sends planned callbacks at their time from the simulator's event loop.

    A job's stream of submits plans callbacks by the thousand (20,000 at 200 a second in
    bench/jobs.py), so they are not one task each: a heap holds them in time order, one timer
    moves those that are due onto a queue, and `concurrency` senders send them, so at most that
    many GETs are in flight and the connection pool never makes one wait (where its timeout
    would count against the callback). A receiver slower than the stream makes the queue grow,
    never the number of sockets or tasks; `backlog` says how many are due and not yet sent.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        concurrency: int = MAX_CALLBACKS_IN_FLIGHT,
    ) -> None:
        self._clock = clock
        self._concurrency = concurrency
        self._client: aiohttp.ClientSession | None = None
        self._planned: list[tuple[float, int, PlannedCallback]] = []
        self._order = itertools.count()
        self._due: asyncio.Queue[PlannedCallback] | None = None
        self._changed: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._unsent = 0

    @property
    def backlog(self) -> int:
        """Callbacks due and not yet sent (queued or in flight)."""
        return self._unsent

    def schedule(self, callbacks: list[PlannedCallback]) -> None:
        sendable = [c for c in callbacks if c.kind != "lost"]
        if not sendable:
            return
        self._start()
        for callback in sendable:
            heapq.heappush(self._planned, (callback.at, next(self._order), callback))
        assert self._changed is not None
        self._changed.set()

    def _start(self) -> None:
        if self._workers:
            return
        self._due = asyncio.Queue()
        self._changed = asyncio.Event()
        # aiohttp, as phonebridge's own upstream client and webhook sender use: httpx's async
        # pool costs several times its CPU per request and degrades under concurrency
        # (service/upstream/transport.py), and at 200 callbacks a second the simulator is busy.
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency),
            timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S),
            trust_env=False,
        )
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._release_due())] + [
            loop.create_task(self._send_due()) for _ in range(self._concurrency)
        ]

    async def _release_due(self) -> None:
        assert self._due is not None
        assert self._changed is not None
        while True:
            now = self._clock()
            while self._planned and self._planned[0][0] <= now:
                _, _, callback = heapq.heappop(self._planned)
                self._unsent += 1
                self._due.put_nowait(callback)
            self._changed.clear()
            wait_s = self._planned[0][0] - now if self._planned else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._changed.wait()

    async def _send_due(self) -> None:
        assert self._due is not None
        while True:
            callback = await self._due.get()
            try:
                await self._send(callback)
            finally:
                self._unsent -= 1

    async def _send(self, callback: PlannedCallback) -> None:
        assert self._client is not None
        callback.sent_at = self._clock()
        try:
            async with self._client.get(
                callback.url, params=callback.params, allow_redirects=False
            ) as response:
                await response.read()
                callback.status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            callback.error = type(error).__name__

    async def aclose(self) -> None:
        for task in self._workers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._client is not None:
            await self._client.close()
