"""Real local webhook receivers for tests: an aiohttp server on 127.0.0.1 in its own thread.

Each path answers from a script of replies (then the default reply), and every request is kept
with its headers, body and arrival time, so tests verify signatures on what really went over the
wire. A flaky receiver (for the chaos tests) fails about half of the attempts it gets (500, 503
with Retry-After, 429, or no answer before the sender's timeout) and keeps every request with the
reply it chose, so a test can hold the sender's attempt log against what really arrived.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from service.run.processes import free_port


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    # Accept the request and never answer (until the receiver stops).
    hang: bool = False


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float  # time.monotonic()
    query: str = ""  # the query string, for GETs (upstream's callbacks)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=2**22)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def _stop() -> None:
            assert self._stopping is not None
            assert self._runner is not None
            self._stopping.set()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # --- scripting ---------------------------------------------------------------------------
    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply, default: Reply | None = None) -> None:
        """Answer the next requests to `path` with `replies`, then with `default` (200 ok)."""
        with self._changed:
            self._scripts[path] = deque(replies)
            self._defaults[path] = default or Reply()

    def received(self, path: str | None = None) -> list[ReceivedRequest]:
        with self._changed:
            return [r for r in self.requests if path is None or r.path == path]

    async def wait_for(self, count: int, path: str | None = None, timeout: float = 15.0) -> None:
        """Wait until `count` requests (to `path`) have arrived."""

        def _wait() -> bool:
            with self._changed:
                return self._changed.wait_for(
                    lambda: (
                        len([r for r in self.requests if path is None or r.path == path]) >= count
                    ),
                    timeout=timeout,
                )

        if not await asyncio.to_thread(_wait):
            raise TimeoutError(f"{len(self.received(path))} requests to {path}, wanted {count}")

    # --- serving -----------------------------------------------------------------------------
    def _next_reply(self, request: ReceivedRequest) -> Reply:
        """The reply to `request` (called with the lock held, in arrival order)."""
        script = self._scripts.get(request.path)
        return script.popleft() if script else self._defaults.get(request.path, Reply())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._changed:
            self.requests.append(
                ReceivedRequest(
                    request.path,
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                    time.monotonic(),
                    request.query_string,
                )
            )
            reply = self._next_reply(self.requests[-1])
            self._changed.notify_all()
        if reply.hang:
            assert self._stopping is not None
            await self._stopping.wait()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    return free_port()


# --- a receiver that misbehaves -----------------------------------------------------------------

# Longer than PHONEBRIDGE_WEBHOOK_TIMEOUT_S in the chaos stack: the sender gives up first.
TIMEOUT_REPLY = Reply(status=200, delay_s=2.5)
FAILURES = (
    Reply(status=500, body=b"boom"),
    Reply(status=503, headers={"Retry-After": "1"}),
    Reply(status=429),
    TIMEOUT_REPLY,
)


@dataclass(frozen=True)
class Answered:
    request: ReceivedRequest
    reply: Reply

    @property
    def webhook_id(self) -> str:
        return self.request.headers.get("webhook-id", "")

    @property
    def accepted(self) -> bool:
        """Whether the sender saw a 2xx in time (a delayed reply comes after its timeout)."""
        return 200 <= self.reply.status < 300 and self.reply.delay_s == 0


class FlakyReceiver(Receiver):
    """Fails each request with probability `failure_rate` (seeded), but never more than
    `max_failures_in_row` times in a row for one message, so every message gets through within
    the retry schedule. `failure_rate=0` makes a receiver that always accepts."""

    def __init__(self, *, failure_rate: float, seed: int, max_failures_in_row: int = 3) -> None:
        super().__init__()
        self.failure_rate = failure_rate
        self.max_failures_in_row = max_failures_in_row
        self._random = random.Random(seed)
        self._failures_in_row: Counter[str] = Counter()
        self.replies: list[Reply] = []

    def _next_reply(self, request: ReceivedRequest) -> Reply:
        webhook_id = request.headers.get("webhook-id", "")
        fail = (
            self._failures_in_row[webhook_id] < self.max_failures_in_row
            and self._random.random() < self.failure_rate
        )
        if fail:
            self._failures_in_row[webhook_id] += 1
            reply = self._random.choice(FAILURES)
        else:
            self._failures_in_row[webhook_id] = 0
            reply = Reply()
        self.replies.append(reply)
        return reply

    def answered(self) -> list[Answered]:
        with self._changed:
            return [
                Answered(request, reply)
                for request, reply in zip(self.requests, self.replies, strict=True)
            ]


@contextmanager
def flaky_receiver(*, failure_rate: float, seed: int) -> Iterator[FlakyReceiver]:
    receiver = FlakyReceiver(failure_rate=failure_rate, seed=seed)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
