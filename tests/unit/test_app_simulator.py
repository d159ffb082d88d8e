"""The simulator's ASGI app (service/sim/app.py), called as an ASGI server calls it: upstream's two
endpoints take POSTs only, a body past 64 KiB is refused before it is answered or logged, a
body sent in pieces is read whole, a slowed answer whose caller hung up is never sent (and does
not hold the call for its delay), a reset without a transport to abort is an error, the control
API lives under /_sim/, and other scopes are ignored. Through a real server (RSTs, timeouts,
every answer) it is tests/integration/sim/'s."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from service.sim.app import SimApp
from service.sim.faults import FaultMode, FaultSettings, ForcedFault
from service.sim.state import SimOptions, SimState
from tests.support.upstream import API_ID, API_SECRET

TASK_RESULT = "/check/phone_number/task_result/o1"
CREDENTIALS = [(b"x-df-api-id", API_ID.encode()), (b"x-df-api-secret", API_SECRET.encode())]


def simulator(forced: FaultMode | None = None, slow_s: float = 5.0) -> SimApp:
    state = SimState(SimOptions(api_id=API_ID, api_secret=API_SECRET))
    if forced is not None:
        state.set_faults(FaultSettings(slow_s=slow_s, forced=ForcedFault(forced, calls_left=1)))
    return SimApp(state)


class Exchange:
    """One HTTP exchange with the app: the request's body in pieces, then (with `hang_up`) the
    client gone; what the app sent is kept."""

    def __init__(self, pieces: list[bytes], *, hang_up: bool = False) -> None:
        self.incoming: list[dict[str, Any]] = [
            {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
            for i, piece in enumerate(pieces)
        ]
        if hang_up:
            self.incoming.append({"type": "http.disconnect"})
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.Event().wait()  # a client that keeps the connection open and quiet
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        [start] = [m for m in self.sent if m["type"] == "http.response.start"]
        return int(start["status"])

    def json(self) -> Any:
        return json.loads(b"".join(m["body"] for m in self.sent if "body" in m))


async def call(
    app: SimApp, method: str, path: str, exchange: Exchange, *, credentials: bool = True
) -> Exchange:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": CREDENTIALS if credentials else [],
    }
    await app(scope, exchange.receive, exchange.send)  # type: ignore[arg-type]
    return exchange


def task_result(task_id: str) -> list[bytes]:
    return [json.dumps({"task_id": task_id}).encode()]


async def test_an_upstream_endpoint_answers_a_post_and_logs_the_call() -> None:
    app = simulator()

    answered = await call(app, "POST", TASK_RESULT, Exchange(task_result("sim-busy-0")))

    assert answered.status == 200
    assert answered.json()["result"]["phone_status"] == "busy"
    assert [c["task_id"] for c in app.state.calls()] == ["sim-busy-0"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", TASK_RESULT), ("POST", "/check/phone_number/o2"), ("GET", "/")]
)
async def test_anything_but_a_post_to_an_upstream_endpoint_is_upstreams_not_found(
    method: str, path: str
) -> None:
    app = simulator()

    answered = await call(app, method, path, Exchange(task_result("sim-busy-0")))

    assert answered.status == 404
    assert answered.json()["status"] == "NOT_FOUND"
    assert app.state.calls() == []


async def test_a_body_past_64_kib_is_refused_and_never_reaches_the_simulation() -> None:
    app = simulator()
    pieces = [b"{" + b" " * 40_000, b" " * 40_000 + b'"task_id": "sim-busy-0"}']

    answered = await call(app, "POST", TASK_RESULT, Exchange(pieces))

    assert answered.status == 400
    assert answered.json()["status"] == "INVALID_ARGUMENT"
    assert "too large" in json.dumps(answered.json())
    assert app.state.calls() == []


async def test_a_body_in_pieces_is_read_whole() -> None:
    app = simulator()
    body = json.dumps({"task_id": "sim-ring-0"}).encode()

    answered = await call(app, "POST", TASK_RESULT, Exchange([body[:5], body[5:9], body[9:]]))

    assert answered.json()["result"]["phone_status"] == "ring"


async def test_a_slow_answer_whose_caller_hung_up_is_not_sent_nor_waited_for() -> None:
    app = simulator(FaultMode.SLOW, slow_s=30.0)
    started = time.monotonic()

    hung_up = await call(
        app, "POST", TASK_RESULT, Exchange(task_result("sim-ring-0"), hang_up=True)
    )

    assert time.monotonic() - started < 5.0
    assert hung_up.sent == []
    assert [c["answer"] for c in app.state.calls()] == ["slow:OK"]


async def test_a_slow_answer_comes_after_its_delay_to_a_caller_that_waits() -> None:
    app = simulator(FaultMode.SLOW, slow_s=0.2)
    started = time.monotonic()

    answered = await call(app, "POST", TASK_RESULT, Exchange(task_result("sim-ring-0")))

    assert time.monotonic() - started >= 0.2
    assert answered.status == 200


async def test_a_reset_without_a_transport_to_abort_is_an_error_not_an_answer() -> None:
    app = simulator(FaultMode.RESET)

    with pytest.raises(ConnectionAbortedError):
        await call(app, "POST", TASK_RESULT, Exchange(task_result("sim-ring-0")))


async def test_the_control_api_is_under_sim() -> None:
    app = simulator()
    await call(app, "POST", TASK_RESULT, Exchange(task_result("sim-ring-0")))

    seen = await call(app, "GET", "/_sim/tasks/sim-ring-0", Exchange([b""]), credentials=False)

    assert seen.status == 200
    assert seen.json()["calls"] == 1


async def test_a_scope_other_than_http_or_lifespan_is_ignored() -> None:
    exchange = Exchange([])

    await simulator()({"type": "websocket"}, exchange.receive, exchange.send)  # type: ignore[arg-type]

    assert exchange.sent == []


async def test_the_lifespan_starts_at_once_and_closes_the_callback_sender_at_shutdown() -> None:
    app = simulator()
    exchange = Exchange([])
    exchange.incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    closed: list[bool] = []
    close = app.callbacks.aclose

    async def recorded_close() -> None:
        closed.append(True)
        await close()

    app.callbacks.aclose = recorded_close  # type: ignore[method-assign]

    await app({"type": "lifespan"}, exchange.receive, exchange.send)  # type: ignore[arg-type]

    assert [m["type"] for m in exchange.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert closed == [True]
