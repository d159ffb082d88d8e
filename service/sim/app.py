"""The simulator's ASGI app: the two AccuAuth endpoints on a bare ASGI fast path, the control API
under /_sim/ (see `service.sim.control`), and upstream's 404 NOT_FOUND for every other path."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from service.sim import answers
from service.sim.answers import Answer
from service.sim.callbacks import CallbackSender
from service.sim.calls import Endpoint
from service.sim.control import create_control_app
from service.sim.state import SimState

UPSTREAM_PATHS = {
    "/check/phone_number/o1": Endpoint.SUBMIT,
    "/check/phone_number/task_result/o1": Endpoint.TASK_RESULT,
}
CONTROL_PREFIX = "/_sim/"
_MAX_BODY_BYTES = 64 * 1024


class SimApp:
    """ASGI entry point; `state` is the simulator's memory, shared with the control API."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.control: ASGIApp = create_control_app(state)
        self.callbacks = CallbackSender()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        endpoint = UPSTREAM_PATHS.get(path)
        if endpoint is not None and scope["method"] == "POST":
            await self._upstream_call(endpoint, scope, receive, send)
        elif path.startswith(CONTROL_PREFIX):
            await self.control(scope, receive, send)
        else:
            await _send(send, answers.path_not_found())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Nothing to start; at shutdown, the callback sender closes its connections."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.callbacks.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _upstream_call(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
    ) -> None:
        api_id: bytes | None = None
        api_secret: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-df-api-id":
                api_id = value
            elif name == b"x-df-api-secret":
                api_secret = value
        body = await _read_body(receive)
        if body is None:
            answer = answers.invalid_argument("request body too large")
        else:
            answer = self.state.answer_call(endpoint, api_id, api_secret, body)
            if endpoint is Endpoint.SUBMIT:
                self.callbacks.schedule(self.state.take_planned_callbacks())
        if answer.reset:
            await _reset_connection(send, receive)
            return
        if answer.delay_s > 0 and await _client_left_within(receive, answer.delay_s):
            return
        await _send(send, answer)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, answer: Answer) -> None:
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(answer.body)).encode()),
        *answer.headers,
    ]
    await send({"type": "http.response.start", "status": answer.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _client_left_within(receive: Receive, delay_s: float) -> bool:
    """Wait `delay_s`; True when the client hung up first (its timeout fired), so the slow
    answer does not hold a server task, or a graceful shutdown, for the whole delay."""
    try:
        async with asyncio.timeout(delay_s):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


async def _reset_connection(send: Send, receive: Receive) -> None:
    """Close the socket with an RST and no answer, as a crashing upstream or proxy would.

    ASGI has no way to say this, so it reaches uvicorn's connection through the `send` callable
    (a bound method of its request cycle, which holds the transport). Without one, the call
    falls back to an abrupt 500 by raising.
    """
    transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError("simulated connection reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # Linger 0: the kernel answers the close with RST instead of an orderly FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let the server notice the disconnect, so it does not try to send its own 500.
    while (await receive())["type"] != "http.disconnect":
        pass
