"""Failed sign-ins are throttled per source address, on the API and the portal alike, and a
sign-in form's nonce expires on the server (issue 29, item 11). An app of its own, with a limit
of three failures a minute; each test comes from addresses of its own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from service.api.app import create_app
from service.api.portal.session import SIGN_IN_COOKIE, SIGN_IN_NONCE_S, sign_in_csrf
from service.api.resources import ApiResources
from service.domain.portal import sign_in_nonce
from tests.support.api import bearer
from tests.support.factories import new_key
from tests.support.portal import sign_in
from tests.support.settings import webhook_settings

LIMIT = 3
WRONG_KEY = "pbk_" + "A" * 43


@pytest.fixture(scope="module")
async def throttled_app(database_url: str, redis_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(webhook_settings(database_url, redis_url, sign_in_failures_per_minute=LIMIT))
    async with app.router.lifespan_context(app):
        yield app


def client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    # HTTPS: from an address that is not loopback, the portal's cookies are Secure.
    return httpx.AsyncClient(transport=transport, base_url="https://phonebridge.example")


@pytest.fixture
def address() -> str:
    """An address no other test of this run used (a documentation range, IPv6)."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


async def test_past_the_limit_an_address_gets_429_with_retry_after_even_for_a_valid_key(
    throttled_app: FastAPI, address: str
) -> None:
    key = await new_key(throttled_app.state.settings)
    async with client_from(throttled_app, address) as client:
        for _ in range(LIMIT):
            assert (await client.get("/v1/tasks", headers=bearer(WRONG_KEY))).status_code == 401
        refused = await client.get("/v1/tasks", headers=bearer(WRONG_KEY))
        # A key not confirmed lately is not even looked at: the answer tells a guesser nothing.
        valid = await client.get("/v1/tasks", headers=bearer(key))
    for answer in (refused, valid):
        assert answer.status_code == 429
        assert answer.headers["content-type"] == "application/problem+json"
        assert 1 <= int(answer.headers["retry-after"]) <= 60
        assert answer.json()["type"].endswith("too-many-failed-sign-ins")
    async with client_from(throttled_app, "2001:db8::1:1") as elsewhere:
        assert (await elsewhere.get("/v1/tasks", headers=bearer(key))).status_code == 200


async def test_a_key_in_use_keeps_working_while_its_address_is_throttled(
    throttled_app: FastAPI, address: str
) -> None:
    key = await new_key(throttled_app.state.settings)
    async with client_from(throttled_app, address) as client:
        assert (await client.get("/v1/tasks", headers=bearer(key))).status_code == 200
        for _ in range(LIMIT + 2):
            await client.get("/v1/tasks", headers=bearer(WRONG_KEY))
        assert (await client.get("/v1/tasks", headers=bearer(key))).status_code == 200


async def test_junk_in_the_authorization_header_counts_as_a_failure(
    throttled_app: FastAPI, address: str
) -> None:
    async with client_from(throttled_app, address) as client:
        for junk in ("Bearer nope", "Basic dXNlcjpwYXNz", "Bearer pbk_short"):
            answer = await client.get("/v1/tasks", headers={"authorization": junk})
            assert answer.status_code == 401
        answer = await client.get("/v1/tasks", headers=bearer(WRONG_KEY))
    assert answer.status_code == 429


async def test_the_portal_and_the_api_share_one_count(throttled_app: FastAPI, address: str) -> None:
    async with client_from(throttled_app, address) as client:
        for _ in range(LIMIT - 1):
            assert (await client.get("/v1/tasks", headers=bearer(WRONG_KEY))).status_code == 401
        assert (await sign_in(client, WRONG_KEY)).status_code == 401
        refused = await sign_in(client, WRONG_KEY)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "Too many invalid API keys" in refused.text


async def test_a_sign_in_form_older_than_its_lifetime_is_refused(
    throttled_app: FastAPI, address: str
) -> None:
    key = await new_key(throttled_app.state.settings)
    resources: ApiResources = throttled_app.state.resources
    issued = resources.clock().timestamp() - SIGN_IN_NONCE_S - 5
    nonce = sign_in_nonce(issued, secrets.token_hex(16))
    async with client_from(throttled_app, address) as client:
        stale = await client.post(
            "/portal/sign-in",
            data={"api_key": key, "csrf": sign_in_csrf(resources, nonce)},
            headers={"cookie": f"{SIGN_IN_COOKIE}={nonce}"},
        )
        fresh_nonce = sign_in_nonce(resources.clock().timestamp(), secrets.token_hex(16))
        fresh = await client.post(
            "/portal/sign-in",
            data={"api_key": key, "csrf": sign_in_csrf(resources, fresh_nonce)},
            headers={"cookie": f"{SIGN_IN_COOKIE}={fresh_nonce}"},
        )
    assert stale.status_code == 403
    assert fresh.status_code == 303
