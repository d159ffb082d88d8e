"""The AccuAuth client against the simulator (a real HTTP server on loopback): credentials are
sent, every misbehaviour comes back as a RawAnswer, nothing raises, no secret leaks."""

from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import pytest

from service.clock import utc_now
from service.config import Settings
from service.domain.answers import OutcomeKind, TransportError, classify_answer
from service.sim.server import SimServer
from service.upstream.client import MAX_BODY_BYTES, TASK_RESULT_PATH, UpstreamClient
from tests.support.receivers import Reply, running_receiver
from tests.support.settings import make_settings
from tests.support.upstream import API_SECRET


def client_settings(base_url: str, **overrides: object) -> Settings:
    values = {"upstream_base_url": base_url, "upstream_timeout_s": 2.0, **overrides}
    return make_settings("postgresql://unused/db", "redis://unused:1/0", **values)


async def test_credentials_are_sent_and_a_result_comes_back(fresh_sim: SimServer) -> None:
    client = UpstreamClient(client_settings(fresh_sim.base_url))
    try:
        raw = await client.fetch_task_result("sim-ring-0-client")
    finally:
        await client.aclose()
    assert raw.status_code == 200
    body = json.loads(raw.body)
    assert body["status"] == "OK"
    assert body["result"]["phone_status"] == "ring"
    assert classify_answer(raw, utc_now()).kind is OutcomeKind.COMPLETED


async def test_pending_comes_back_as_http_400(fresh_sim: SimServer) -> None:
    client = UpstreamClient(client_settings(fresh_sim.base_url))
    try:
        raw = await client.fetch_task_result("sim-ring-2-client")
    finally:
        await client.aclose()
    assert raw.status_code == 400
    assert classify_answer(raw, utc_now()).kind is OutcomeKind.PENDING


async def test_wrong_credentials_are_an_account_problem(fresh_sim: SimServer) -> None:
    client = UpstreamClient(
        client_settings(fresh_sim.base_url, upstream_api_secret="not-the-secret")
    )
    try:
        raw = await client.fetch_task_result("sim-ring-0-badkey")
    finally:
        await client.aclose()
    assert raw.status_code == 401
    outcome = classify_answer(raw, utc_now())
    assert (outcome.kind, outcome.code) == (OutcomeKind.ACCOUNT_PROBLEM, "UNAUTHORIZED")


async def test_slow_upstream_is_a_timeout(fresh_sim: SimServer) -> None:
    fresh_sim.control.set_faults(slow_s=3.0, force={"mode": "slow"})
    client = UpstreamClient(client_settings(fresh_sim.base_url, upstream_timeout_s=0.3))
    started = time.monotonic()
    try:
        raw = await client.fetch_task_result("sim-ring-0-slow")
    finally:
        await client.aclose()
    assert raw.transport_error is TransportError.TIMEOUT
    assert time.monotonic() - started < 1.5


async def test_reset_connection_is_a_connection_error(fresh_sim: SimServer) -> None:
    fresh_sim.control.force("reset")
    client = UpstreamClient(client_settings(fresh_sim.base_url))
    try:
        raw = await client.fetch_task_result("sim-ring-0-reset")
    finally:
        await client.aclose()
    assert raw.transport_error is TransportError.CONNECTION_ERROR


async def test_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = UpstreamClient(client_settings(f"http://127.0.0.1:{port}"))
    try:
        raw = await client.fetch_task_result("anything")
    finally:
        await client.aclose()
    assert raw.transport_error is TransportError.CONNECTION_ERROR


@pytest.mark.parametrize("mode", ["html", "empty", "garbage", "internal_error", "unknown_status"])
async def test_misbehaving_answers_come_back_as_raw_answers(
    fresh_sim: SimServer, mode: str
) -> None:
    fresh_sim.control.force(mode)
    client = UpstreamClient(client_settings(fresh_sim.base_url))
    try:
        raw = await client.fetch_task_result(f"sim-ring-0-{mode}")
    finally:
        await client.aclose()
    assert raw.status_code is not None
    assert classify_answer(raw, utc_now()).kind is OutcomeKind.TRANSIENT


async def test_endless_body_is_cut_off() -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * (MAX_BODY_BYTES * 4))

    client = UpstreamClient(
        client_settings("http://upstream.test"), transport=httpx.MockTransport(endless)
    )
    try:
        raw = await client.fetch_task_result("big")
    finally:
        await client.aclose()
    assert len(raw.body) == MAX_BODY_BYTES
    assert classify_answer(raw, utc_now()).code == "INVALID_JSON"


async def test_retry_after_header_is_passed_on() -> None:
    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            403, json={"status": "RATE_LIMIT_EXCEEDED"}, headers={"Retry-After": "3"}
        )

    client = UpstreamClient(
        client_settings("http://upstream.test"), transport=httpx.MockTransport(limited)
    )
    try:
        raw = await client.fetch_task_result("t")
    finally:
        await client.aclose()
    assert raw.retry_after == "3"
    assert classify_answer(raw, utc_now()).retry_after_s == 3.0


async def test_request_carries_both_credential_headers_and_the_task_id() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, json={"status": "PENDING"})

    client = UpstreamClient(
        client_settings("http://upstream.test"), transport=httpx.MockTransport(record)
    )
    try:
        await client.fetch_task_result("T-123")
    finally:
        await client.aclose()
    [request] = seen
    assert request.method == "POST"
    assert request.url.path == "/check/phone_number/task_result/o1"
    assert request.headers["X-DF-API-ID"] == "test-api-id"
    assert request.headers["X-DF-API-SECRET"] == API_SECRET
    assert json.loads(request.content) == {"task_id": "T-123"}


async def test_transport_failures_never_reveal_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"failed with headers {dict(request.headers)}")

    caplog.set_level(logging.DEBUG)
    client = UpstreamClient(
        client_settings("http://upstream.test"), transport=httpx.MockTransport(explode)
    )
    try:
        raw = await client.fetch_task_result("T-1")
    finally:
        await client.aclose()
    assert raw.transport_error is TransportError.CONNECTION_ERROR
    outcome = classify_answer(raw, utc_now())
    assert API_SECRET not in outcome.message
    assert API_SECRET not in caplog.text
    assert API_SECRET not in repr(raw)


# The default transport's own path (no httpx objects around the call), over real HTTP.


async def test_over_aiohttp_an_endless_body_is_cut_off() -> None:
    with running_receiver() as server:
        server.script(TASK_RESULT_PATH, default=Reply(200, b"x" * (MAX_BODY_BYTES * 4)))
        client = UpstreamClient(client_settings(f"http://127.0.0.1:{server.port}"))
        try:
            raw = await client.fetch_task_result("big")
        finally:
            await client.aclose()
    assert len(raw.body) == MAX_BODY_BYTES
    assert classify_answer(raw, utc_now()).code == "INVALID_JSON"


async def test_over_aiohttp_retry_after_is_passed_on_and_the_request_is_whole() -> None:
    limited = Reply(403, b'{"status": "RATE_LIMIT_EXCEEDED"}', headers={"Retry-After": "3"})
    with running_receiver() as server:
        server.script(TASK_RESULT_PATH, default=limited)
        client = UpstreamClient(client_settings(f"http://127.0.0.1:{server.port}"))
        try:
            raw = await client.fetch_task_result("T-123")
        finally:
            await client.aclose()
        [request] = server.received(TASK_RESULT_PATH)
    assert raw.status_code == 403
    assert raw.retry_after == "3"
    assert classify_answer(raw, utc_now()).retry_after_s == 3.0
    assert request.headers["x-df-api-id"] == "test-api-id"
    assert request.headers["x-df-api-secret"] == API_SECRET
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"task_id": "T-123"}
