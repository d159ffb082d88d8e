"""A real local webhook receiver for tests: an aiohttp server on 127.0.0.1 in its own thread.

Each path answers from a script of replies (then the default reply), and every request is kept
with its headers, body and arrival time, so tests verify signatures on what really went over the
wire.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web


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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
