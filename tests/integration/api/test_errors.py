"""Problem documents everywhere, the 1 MiB body limit, hostile input never producing a 5xx, health
and readiness, and a 503 (not a 500) when the database is down."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message

from service.api.body_limit import MAX_BODY_BYTES
from service.api.resources import new_intake_pool
from service.upstream.pause import close_pause, open_pause
from tests.support.api import api_client, bearer, json_bearer
from tests.support.settings import make_settings

PROBLEM = "application/problem+json"
# Nothing listens here: connections are refused at once.
DEAD_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/phonebridge"
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["type"]
    assert problem["detail"]
    # Every problem carries a stable code a program can switch on (contract: REST API).
    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", problem["code"]), problem
    return problem


# --- problem documents for what the framework answers ------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/v1/nope", "/v1/tasks/a/b", "/v1/tasks/a%2Fb/c"])
async def test_unknown_route_answers_404_problem(api: httpx.AsyncClient, path: str) -> None:
    assert_problem(await api.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/tasks", {"GET", "POST"}),
        ("PATCH", "/v1/tasks/T-1", {"GET", "DELETE"}),
        ("DELETE", "/v1/events", {"GET"}),
        ("POST", "/healthz", {"GET"}),
    ],
)
async def test_wrong_method_answers_405_problem_with_allow(
    api: httpx.AsyncClient, key: str, method: str, path: str, allowed: set[str]
) -> None:
    response = await api.request(method, path, headers=bearer(key))
    assert_problem(response, 405)
    assert {m.strip() for m in response.headers["allow"].split(",")} >= allowed


async def test_request_validation_error_is_a_422_problem_naming_the_field(
    api: httpx.AsyncClient, key: str
) -> None:
    problem = assert_problem(await api.get("/v1/tasks?limit=900", headers=bearer(key)), 422)
    assert problem["errors"][0]["field"] == "query.limit"
    assert "query.limit" in problem["detail"]
    assert "500" in problem["detail"]


# --- the body limit -------------------------------------------------------------------------------


async def test_declared_body_over_1_mib_answers_413_without_reading_it(api_app: FastAPI) -> None:
    sent: list[Message] = []
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/tasks",
        "raw_path": b"/v1/tasks",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", str(MAX_BODY_BYTES + 1).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await api_app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert (b"content-type", PROBLEM.encode()) in sent[0]["headers"]
    assert reads == 0


async def test_chunked_body_over_1_mib_answers_413_and_is_not_read_to_the_end(
    api: httpx.AsyncClient, key: str
) -> None:
    chunk = b" " * 65536
    total_chunks = 64  # 4 MiB
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(total_chunks):
            pulled += 1
            yield chunk

    response = await api.post("/v1/tasks", content=body(), headers=json_bearer(key))
    problem = assert_problem(response, 413)
    assert str(MAX_BODY_BYTES) in problem["detail"]
    assert pulled <= MAX_BODY_BYTES // len(chunk) + 2


async def test_body_of_exactly_1_mib_is_read(api: httpx.AsyncClient, key: str) -> None:
    document = b'{"task_id": "EXACT-1"}'
    padded = document + b" " * (MAX_BODY_BYTES - len(document))
    response = await api.post("/v1/tasks", content=padded, headers=json_bearer(key))
    assert response.status_code == 201


async def test_oversized_batch_body_answers_413(api: httpx.AsyncClient, key: str) -> None:
    response = await api.post(
        "/v1/tasks/batch", content=b" " * (MAX_BODY_BYTES + 1), headers=bearer(key)
    )
    assert_problem(response, 413)


# --- hostile input --------------------------------------------------------------------------------


def hostile_requests() -> list[tuple[str, str, bytes | None, dict[str, str]]]:
    json_ct = {"content-type": "application/json"}
    requests: list[tuple[str, str, bytes | None, dict[str, str]]] = [
        ("POST", "/v1/tasks", b'{"task_id": "T", "metadata": {"n": 1e309}}', json_ct),
        ("POST", "/v1/tasks", b'{"task_id": "T", "metadata": {"n": -1e999999}}', json_ct),
        (
            "POST",
            "/v1/tasks",
            b'{"task_id": "T", "metadata": {"n": ' + b"9" * 5000 + b"}}",
            json_ct,
        ),
        ("POST", "/v1/tasks", b'{"task_id": "T", "submitted_at": "' + b"9" * 5000 + b'"}', json_ct),
        (
            "POST",
            "/v1/tasks",
            b'{"task_id": "T", "submitted_at": "99999-01-01T00:00:00Z"}',
            json_ct,
        ),
        (
            "POST",
            "/v1/tasks",
            b'{"task_id": "T", "submitted_at": "0001-01-01T00:00:00-23:59"}',
            json_ct,
        ),
        (
            "POST",
            "/v1/tasks",
            b'{"task_id": "T", "metadata": ' + b"[" * 1000 + b"]" * 1000 + b"}",
            json_ct,
        ),
        ("POST", "/v1/tasks", b'{"task_id": "T", "metadata": {"a": "\\udfff\\ud800"}}', json_ct),
        ("POST", "/v1/tasks", b"\x00\x00\x00", json_ct),
        ("POST", "/v1/tasks", b"\xef\xbb\xbf{}", json_ct),
        ("POST", "/v1/tasks", b"task_id=T", {"content-type": "application/x-www-form-urlencoded"}),
        ("POST", "/v1/tasks", b'{"task_id": "T"}', {"content-type": "text/plain"}),
        ("POST", "/v1/tasks/batch", b'{"tasks": [' + b"[" * 900 + b"]" * 900 + b"]}", json_ct),
        (
            "POST",
            "/v1/tasks/batch",
            b'{"tasks": [{"task_id": "\\u0000"}, {"metadata": {"\\u0000": 1}}]}',
            json_ct,
        ),
        ("POST", "/v1/tasks/batch", b'{"tasks": [1e999]}', json_ct),
        ("GET", "/v1/tasks?limit=1e400", None, {}),
        ("GET", "/v1/tasks?limit=%00", None, {}),
        ("GET", "/v1/tasks?cursor=%FF%FE", None, {}),
        ("GET", "/v1/tasks?state=pending&state=%00", None, {}),
        ("GET", "/v1/tasks/" + "%F0%9F%92%A9" * 50, None, {}),
        ("GET", "/v1/tasks/..%2F..%2Fetc%2Fpasswd", None, {}),
        ("DELETE", "/v1/tasks/%C0%80", None, {}),
        ("GET", "/v1/events?after=%F0%9F%92%A9", None, {}),
        ("GET", "/v1/events/%00%00", None, {}),
        ("GET", "/v1/events?limit=" + "9" * 4000, None, {}),
    ]
    # Mangled variants of a valid body: truncated, bytes flipped, random bytes.
    rng = random.Random(20261126)
    valid = (
        b'{"task_id": "T-1", "submitted_at": "2026-11-26T10:00:00Z", "metadata": {"k": [1, "v"]}}'
    )
    for _ in range(120):
        mangled = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        path = rng.choice(["/v1/tasks", "/v1/tasks/batch"])
        body = bytes(mangled) if path == "/v1/tasks" else b'{"tasks": [' + bytes(mangled) + b"]}"
        requests.append(("POST", path, body, json_ct))
    for _ in range(40):
        noise = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        requests.append(("POST", rng.choice(["/v1/tasks", "/v1/tasks/batch"]), noise, json_ct))
    return requests


async def test_hostile_input_never_produces_a_5xx(api: httpx.AsyncClient, key: str) -> None:
    for method, path, body, headers in hostile_requests():
        response = await api.request(method, path, content=body, headers={**headers, **bearer(key)})
        assert response.status_code < 500, (method, path, body, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == PROBLEM, (path, body)


# --- health, readiness, outages -------------------------------------------------------------------


async def test_healthz_answers_200(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_database_redis_and_no_pause(api: httpx.AsyncClient) -> None:
    response = await api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "upstream": {"paused": False},
    }


async def test_readyz_shows_an_upstream_pause_and_stays_ready(
    api: httpx.AsyncClient, api_app: FastAPI
) -> None:
    redis = api_app.state.resources.redis
    since = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    await open_pause(redis, "KEY_EXPIRED", since)
    try:
        response = await api.get("/readyz")
    finally:
        await close_pause(redis)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["upstream"] == {"paused": True, "reason": "KEY_EXPIRED", "since": since.isoformat()}


@pytest.fixture
async def api_without_database(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(make_settings(DEAD_DATABASE_URL, redis_url)) as client:
        yield client


@pytest.fixture
async def api_without_redis(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(make_settings(database_url, DEAD_REDIS_URL)) as client:
        yield client


V1_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/tasks", {"task_id": "T-1"}),
    ("POST", "/v1/tasks/batch", {"tasks": [{"task_id": "T-1"}]}),
    ("GET", "/v1/tasks", None),
    ("GET", "/v1/tasks/T-1", None),
    ("DELETE", "/v1/tasks/T-1", None),
    ("GET", "/v1/events", None),
    ("GET", "/v1/events/evt_0123456789abcdef0123456789abcdef", None),
]


async def test_v1_calls_while_the_database_is_down_answer_503_problem(
    api_without_database: httpx.AsyncClient, key: str
) -> None:
    # At once: each waits a short bound for a connection before giving up.
    responses = await asyncio.gather(
        *(
            api_without_database.request(method, path, json=body, headers=bearer(key))
            for method, path, body in V1_CALLS
        )
    )
    for response in responses:
        problem = assert_problem(response, 503)
        assert "database" in problem["detail"]
        assert response.headers["retry-after"].isdigit()
        assert "127.0.0.1" not in response.text


async def test_readyz_names_the_database_when_it_is_down(
    api_without_database: httpx.AsyncClient,
) -> None:
    response = await api_without_database.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "down"
    assert body["redis"] == "ok"
    assert (await api_without_database.get("/healthz")).status_code == 200


async def test_readyz_names_redis_when_it_is_down(api_without_redis: httpx.AsyncClient) -> None:
    response = await api_without_redis.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["redis"] == "down"
    assert body["upstream"] == {"paused": None}


async def test_a_registration_answers_503_when_the_intake_pool_cannot_reach_the_database(
    api_app: FastAPI, api: httpx.AsyncClient, key: str, redis_url: str
) -> None:
    # The key is cached by a first registration, so only the INSERT needs the database: it runs
    # on the intake pool (asyncpg), here one whose database is down.
    first = await api.post("/v1/tasks", json={"task_id": "T-up"}, headers=bearer(key))
    assert first.status_code == 201
    resources = api_app.state.resources
    dead = await new_intake_pool(make_settings(DEAD_DATABASE_URL, redis_url))
    api_app.state.resources = replace(resources, intake=dead)
    try:
        response = await api.post("/v1/tasks", json={"task_id": "T-down"}, headers=bearer(key))
    finally:
        api_app.state.resources = resources
        await dead.close()

    problem = assert_problem(response, 503)
    assert "database" in problem["detail"]
    assert response.headers["retry-after"].isdigit()
    assert "127.0.0.1" not in response.text
