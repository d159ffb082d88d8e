"""Serving a small ASGI app from inside another program: the upstream simulator and the demo's
webhook receiver both run this way in tests and in `phonebridge demo`."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn

from service.config import ConfigError

_START_TIMEOUT_S = 10.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one. Bound before the server starts, so
    clients that connect early wait in the backlog instead of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def listen_for_command(command: str, host: str, port: int) -> socket.socket:
    """`bind_socket` for a CLI command: an address that cannot be bound (in use, not local) is
    a configuration error naming the command and the address."""
    try:
        return bind_socket(host, port)
    except OSError as error:
        raise ConfigError(f"{command}: cannot listen on {host}:{port}: {error.strerror}") from None


def base_url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class BackgroundServer:
    """A uvicorn server on a background thread of this process (uvicorn leaves signals alone off
    the main thread, so the caller keeps its own handlers). Usable as a context manager."""

    def __init__(self, server: uvicorn.Server, *, name: str, host: str, port: int) -> None:
        self._name = name
        self._server = server
        self._socket = bind_socket(host, port)
        self.base_url = base_url_of(self._socket)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        # uvicorn offers no start callback; its `started` flag flips within milliseconds.
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self._name} did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=_START_TIMEOUT_S)
        self._socket.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
