"""Hostile request bodies on every /v1 route that takes one: over 1 MiB (declared or streamed
in chunks) answers 413 without being read to the end; JSON nested 100,000 levels deep and bytes
that are not UTF-8 answer 4xx; none of them a 5xx. (tests/integration/api/test_errors.py holds
the limit's edge, a body of exactly 1 MiB, and mangled bodies for the task routes.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from service.api.limits import MAX_BODY_BYTES
from tests.support.routes import Operation, v1_operations
from tests.support.tenants import Tenant, own_ids

JSON = {"content-type": "application/json"}
DEPTH = 100_000

DEEPLY_NESTED = {
    "arrays": b"[" * DEPTH + b"]" * DEPTH,
    "objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "arrays in a field": b'{"tasks": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
    "objects in metadata": b'{"task_id": "T-deep", "metadata": '
    + b'{"a":' * DEPTH
    + b"1"
    + b"}" * DEPTH
    + b"}",
}

NOT_UTF8 = {
    "latin-1 text": '{"task_id": "T-é", "url": "https://hooks.phonebridge-security.test/é", '
    '"description": "café"}'.encode("latin-1"),
    "invalid start byte": b'{"task_id": "T-\xff\xfe", "description": "\xff"}',
    "overlong NUL": b'{"task_id": "T-\xc0\x80", "description": "\xc0\x80"}',
    "encoded surrogate": b'{"task_id": "T-\xed\xa0\x80", "description": "\xed\xa0\x80"}',
    "truncated sequence": b'{"task_id": "T-\xe2\x82", "description": "\xe2\x82"}',
    "utf-16": '{"task_id": "T-16"}'.encode("utf-16"),
}


def body_operations(app: FastAPI) -> list[Operation]:
    """The operations that read a request body: those whose schema declares one. (A route that
    takes none, like rotate-secret, never reads what is sent; only a declared size is refused
    there, before routing.)"""
    paths = app.openapi()["paths"]
    return [
        op
        for op in v1_operations(app)
        if "requestBody" in paths.get(op.path, {}).get(op.method.lower(), {})
    ]


def assert_refused(response: httpx.Response, status: int | None, where: object) -> None:
    if status is not None:
        assert response.status_code == status, (where, response.status_code, response.text)
    assert 400 <= response.status_code < 500, (where, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", where


def test_there_are_body_routes_to_check(security_app_running: FastAPI) -> None:
    assert len(body_operations(security_app_running)) >= 6


async def test_a_declared_body_over_1_mib_answers_413_on_every_route(
    api: httpx.AsyncClient, security_app_running: FastAPI, mallory: Tenant
) -> None:
    oversized = b" " * (MAX_BODY_BYTES + 1)
    for op in v1_operations(security_app_running):
        if not op.takes_body:
            continue
        response = await api.request(
            op.method,
            op.url(**own_ids(mallory)),
            content=oversized,
            headers={**JSON, **mallory.headers},
        )
        assert_refused(response, 413, op)


async def test_a_chunked_body_over_1_mib_answers_413_before_it_is_read_to_the_end(
    api: httpx.AsyncClient, security_app_running: FastAPI, mallory: Tenant
) -> None:
    chunk = b" " * 65536
    total_chunks = 64  # 4 MiB
    for op in body_operations(security_app_running):
        pulled = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal pulled
            for _ in range(total_chunks):
                pulled += 1
                yield chunk

        response = await api.request(
            op.method,
            op.url(**own_ids(mallory)),
            content=body(),
            headers={**JSON, **mallory.headers},
        )
        assert "content-length" not in response.request.headers
        assert_refused(response, 413, op)
        assert pulled <= MAX_BODY_BYTES // len(chunk) + 2, op


@pytest.mark.parametrize("body", DEEPLY_NESTED.values(), ids=DEEPLY_NESTED)
async def test_json_nested_100000_levels_deep_answers_4xx_on_every_route(
    api: httpx.AsyncClient, security_app_running: FastAPI, mallory: Tenant, body: bytes
) -> None:
    assert len(body) < MAX_BODY_BYTES
    for op in body_operations(security_app_running):
        response = await api.request(
            op.method, op.url(**own_ids(mallory)), content=body, headers={**JSON, **mallory.headers}
        )
        assert_refused(response, None, op)


@pytest.mark.parametrize("body", NOT_UTF8.values(), ids=NOT_UTF8)
async def test_a_body_that_is_not_utf8_answers_4xx_on_every_route(
    api: httpx.AsyncClient, security_app_running: FastAPI, mallory: Tenant, body: bytes
) -> None:
    for op in body_operations(security_app_running):
        response = await api.request(
            op.method, op.url(**own_ids(mallory)), content=body, headers={**JSON, **mallory.headers}
        )
        assert_refused(response, None, op)
