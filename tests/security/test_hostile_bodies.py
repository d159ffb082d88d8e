"""Hostile request bodies on every /v1 route that takes one: over 1 MiB (declared or streamed
in chunks) answers 413 without being read to the end; JSON nested 100,000 levels deep and bytes
that are not UTF-8 answer 4xx; none of them a 5xx. (tests/integration/api/test_errors.py holds
the limit's edge, a body of exactly 1 MiB, and mangled bodies for the task routes.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from service.api.body_limit import MAX_BODY_BYTES
from service.api.check_jobs import BODY_LIMITS as CHECK_JOB_BODY_LIMITS
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


def body_limit_of(op: Operation) -> int:
    """The route's own body limit: 1 MiB, or a check job's list (16 MiB)."""
    return CHECK_JOB_BODY_LIMITS.get(op.path, MAX_BODY_BYTES)


def test_there_are_body_routes_to_check(security_app_running: FastAPI) -> None:
    assert len(body_operations(security_app_running)) >= 6


async def test_a_declared_body_over_1_mib_answers_413_on_every_route(
    api: httpx.AsyncClient, security_app_running: FastAPI, mallory: Tenant
) -> None:
    for op in v1_operations(security_app_running):
        if not op.takes_body:
            continue
        response = await api.request(
            op.method,
            op.url(**own_ids(mallory)),
            content=b" " * (body_limit_of(op) + 1),
            headers={**JSON, **mallory.headers},
        )
        assert_refused(response, 413, op)


async def test_a_chunked_body_over_1_mib_answers_413_before_it_is_read_to_the_end(
    api: httpx.AsyncClient, security_app_running: FastAPI, mallory: Tenant
) -> None:
    chunk = b" " * 65536
    for op in body_operations(security_app_running):
        pulled = 0
        total_chunks = body_limit_of(op) // len(chunk) + 64  # 4 MiB past the route's limit

        async def body(total_chunks: int = total_chunks) -> AsyncIterator[bytes]:
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
        assert pulled <= body_limit_of(op) // len(chunk) + 2, op


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


# --- strict input (issue 29, item 9) -----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"]
)
async def test_a_json_body_sent_as_anything_but_json_answers_415_on_every_route(
    api: httpx.AsyncClient, security_app_running: FastAPI, mallory: Tenant, content_type: str | None
) -> None:
    headers = dict(mallory.headers) | ({"content-type": content_type} if content_type else {})
    for op in body_operations(security_app_running):
        response = await api.request(
            op.method, op.url(**own_ids(mallory)), content=b'{"task_id": "T-415"}', headers=headers
        )
        if content_type is None:
            response.request.headers.pop("content-type", None)
        assert_refused(response, 415, op)
        assert "application/json" in response.json()["detail"]


REPEATED_KEYS = {
    "POST /v1/tasks": b'{"task_id": "T-dup-1", "task_id": "T-dup-2"}',
    "POST /v1/tasks/batch": b'{"tasks": [{"task_id": "T-dup-3", "metadata": {"a": 1, "a": 2}}]}',
    "POST /v1/checks": b'{"phone_number": "+525512345678", "phone_number": "+525512340000"}',
    "POST /v1/subscriptions": b'{"url": "https://a.example/h", "url": "https://b.example/h"}',
}


@pytest.mark.parametrize(("operation", "body"), REPEATED_KEYS.items(), ids=REPEATED_KEYS)
async def test_a_key_named_twice_in_one_object_answers_422(
    api: httpx.AsyncClient, mallory: Tenant, operation: str, body: bytes
) -> None:
    method, path = operation.split(" ")
    response = await api.request(method, path, content=body, headers={**JSON, **mallory.headers})
    assert_refused(response, 422, operation)
    assert "twice in one object" in response.json()["detail"]


@pytest.mark.parametrize("enabled", ["yes", "true", 1, 0, None])
async def test_enabled_must_be_a_json_boolean(
    api: httpx.AsyncClient, alice: Tenant, enabled: object
) -> None:
    subscription = alice.subscription_ids[0]
    response = await api.patch(
        f"/v1/subscriptions/{subscription}", json={"enabled": enabled}, headers=alice.headers
    )
    assert_refused(response, 422, enabled)
    assert (
        await api.patch(
            f"/v1/subscriptions/{subscription}", json={"enabled": False}, headers=alice.headers
        )
    ).json()["enabled"] is False


@pytest.mark.parametrize("since", [0, 1764547200, 1.5, True])
async def test_a_timestamp_must_be_rfc_3339_text_not_a_number(
    api: httpx.AsyncClient, alice: Tenant, since: object
) -> None:
    subscription = alice.subscription_ids[0]
    response = await api.post(
        f"/v1/subscriptions/{subscription}/recover", json={"since": since}, headers=alice.headers
    )
    assert_refused(response, 422, since)
    accepted = await api.post(
        f"/v1/subscriptions/{subscription}/recover",
        json={"since": "2026-12-01T00:00:00Z"},
        headers=alice.headers,
    )
    assert accepted.status_code == 202, accepted.text
