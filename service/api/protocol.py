"""The API's HTTP/1.1 connections: uvicorn's httptools protocol with the limits a reverse proxy
would apply in front of it, so that the API is safe to expose without one.

- A request's line and headers may take about `header_bytes` (16 KiB) in all; a request that sends
  more is answered 431 and its connection closed, before the bytes are buffered (uvicorn has no
  such limit: a 50 MB header was read whole, and eight at once took the API from 126 to 558 MB).
- A request's line and headers must arrive within `header_timeout_s`
  (PHONEBRIDGE_HTTP_HEADER_TIMEOUT_S, 10 s) of their first byte (or of the connection's opening):
  else 408 and the connection is closed (a request line and `Host:` and nothing more were
  otherwise kept open for good).
- A body may pause for at most `body_idle_timeout_s` (PHONEBRIDGE_HTTP_BODY_TIMEOUT_S, 30 s)
  between two reads while the API waits for it; then the connection is closed and the request
  handler sees the client gone.

The counts are of bytes received while a request's headers are being read, fed to the parser in
slices no larger than what is left of the allowance: a request whose headers end within a slice
may carry the next pipelined request's first bytes with it uncounted, so no request's headers
exceed twice the limit. The defaults are the common practice (nginx: 8-16 KB of headers, 60 s
timeouts) with room for any real client of this API.

This subclasses uvicorn's protocol and so depends on its version (the lock pins it);
tests/integration/api/test_hostile_connections.py exercises every limit against a real server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 30.0


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit and read timeouts; uvicorn is given
    `functools.partial(GuardedHttpProtocol, limits=...)` as its protocol.

    Each timeout is a deadline that a request's events move (its first bytes, each piece of its
    body) and a timer that is only armed when none is: when it fires before the deadline it is
    armed again for what is left. Arming and cancelling a loop timer at each event instead cost
    three of each per request on a keep-alive connection (issue 28)."""

    _reading_headers = True
    _header_bytes = 0
    # Loop times when the headers must be complete, when the body must have moved; None: none.
    _header_deadline: float | None = None
    _body_deadline: float | None = None
    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, limits: HttpLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or HttpLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data:
            if not self._reading_headers:
                super().data_received(data)
                return
            room = self.limits.header_bytes - self._header_bytes
            if room <= 0:
                self._refuse(431, "Request Header Fields Too Large")
                return
            if self._header_deadline is None:
                self._arm_header_timer()
            piece, data = data[:room], data[room:]
            self._header_bytes += len(piece)
            super().data_received(piece)
            if self.transport.is_closing():
                return

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._header_deadline = None
        super().on_headers_complete()
        self._arm_body_timer()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        self._body_deadline = None
        self._reading_headers = True
        self._header_bytes = 0
        super().on_message_complete()

    # --- the timers ------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._header_deadline = self.loop.time() + self.limits.header_timeout_s
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout_s, self._header_timer_fired
            )

    def _arm_body_timer(self) -> None:
        self._body_deadline = self.loop.time() + self.limits.body_idle_timeout_s
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(
                self.limits.body_idle_timeout_s, self._body_timer_fired
            )

    def _header_timer_fired(self) -> None:
        self._header_timer = None
        if self._header_deadline is None:
            return
        left = self._header_deadline - self.loop.time()
        if left > 0:
            self._header_timer = self.loop.call_later(left, self._header_timer_fired)
            return
        self._header_deadline = None
        self._headers_too_slow()

    def _body_timer_fired(self) -> None:
        self._body_timer = None
        if self._body_deadline is None:
            return
        left = self._body_deadline - self.loop.time()
        if left > 0:
            self._body_timer = self.loop.call_later(left, self._body_timer_fired)
            return
        self._body_deadline = None
        self._body_too_slow()

    def _cancel_timers(self) -> None:
        self._header_deadline = self._body_deadline = None
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _waiting_on_us(self) -> bool:
        """Whether the connection is quiet because of the API, not the client: reading is paused
        (a handler not yet reading its body, or pipelined requests queued behind a response)."""
        return self.flow is not None and self.flow.read_paused

    def _headers_too_slow(self) -> None:
        if self.transport.is_closing():
            return
        if self._waiting_on_us():
            self._arm_header_timer()
            return
        if self._header_bytes == 0:
            self.transport.close()  # opened and never used: nothing to answer
            return
        log.info("http.headers_timeout", extra={"client": _address(self.client)})
        self._refuse(408, "Request Timeout")

    def _body_too_slow(self) -> None:
        if self.transport.is_closing():
            return
        if self._waiting_on_us():
            self._arm_body_timer()
            return
        log.info("http.body_timeout", extra={"client": _address(self.client)})
        # The handler may be answering already; closing is the one safe answer. It then sees
        # the client gone (http.disconnect), as when the client hangs up.
        self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` with `reason` as plain text and close the connection."""
        self._cancel_timers()
        body = f"{reason}\n".encode()
        self.transport.write(
            b"".join(
                [
                    f"HTTP/1.1 {status} {reason}\r\n".encode(),
                    *(
                        name + b": " + value + b"\r\n"
                        for name, value in self.server_state.default_headers
                    ),
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()


class CoalescedWrites:
    """The connection's transport, with the writes made in one turn of the event loop sent as
    one: uvicorn writes a response's status line and headers, then its body, each at once, so
    every answer cost two sends to the socket, and the client woke up for the first half
    (issue 28: the first send was where a profile of registration found the most samples of
    uvicorn). Whatever is held is sent before the transport closes; the rest is delegated."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._send_held)
        self._held.append(data)

    def _send_held(self) -> None:
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(b"".join(held))

    def close(self) -> None:
        self._send_held()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown"
