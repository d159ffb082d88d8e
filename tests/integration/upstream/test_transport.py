"""The httpx transport over aiohttp (service/upstream/transport.py), against a real receiver:
answers come back as they were sent, redirects are not followed, and a failure is httpx's."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from service.upstream.transport import AiohttpTransport
from tests.support.receivers import Receiver, Reply, refused_port


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=5.0) as client:
        yield client


async def test_a_request_and_its_answer_pass_through_unchanged(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = f"/transport-{secrets.token_hex(4)}"
    receiver.script(
        path, Reply(status=400, body=b'{"status":"PENDING"}', headers={"x-request-id": "TID1"})
    )

    response = await http.post(
        receiver.url(path), json={"task_id": "T-1"}, headers={"X-DF-API-ID": "id"}
    )

    [request] = receiver.received(path)
    assert (response.status_code, response.content) == (400, b'{"status":"PENDING"}')
    assert response.headers["x-request-id"] == "TID1"
    assert request.body == b'{"task_id":"T-1"}'
    assert request.headers["x-df-api-id"] == "id"


async def test_a_redirect_is_answered_not_followed(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = f"/transport-{secrets.token_hex(4)}"
    receiver.script(path, Reply(status=302, headers={"location": "/elsewhere"}))

    response = await http.get(receiver.url(path))

    assert response.status_code == 302
    assert receiver.received("/elsewhere") == []


async def test_a_refused_connection_is_an_httpx_connect_error(http: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ConnectError):
        await http.get(f"http://127.0.0.1:{refused_port()}/")
