"""Every /v1 route refuses a call without a valid API key, and keys are kept only as digests and
checked in constant time. (tests/integration/api/test_auth.py holds the finer behaviour of the
check itself: the key cache, revocation, the order of 401 and body validation.)"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api import auth
from service.features.keys import API_KEY_PREFIX, api_key_digest, generate_api_key
from service.store import clients
from tests.support.api import BAD_AUTHORIZATIONS, bearer
from tests.support.routes import served_operations, v1_operations
from tests.support.tenants import Tenant

# Routes served without a key, on purpose: probes, the operator's metrics and the API docs.
PUBLIC_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/portal/sign-in",
    "/portal/static/portal.css",
    # Upstream's completion callback: no Authorization (upstream sends none), the unguessable
    # token in the path is the secret, and it only ever makes a task due (never a result).
    "/hooks/accuauth/{token}",
}
# The portal's other pages and forms answer only a signed-in session (a cookie, not a key).
PORTAL_PREFIX = "/portal"

# Every /v1 operation the contract names; a new one joins by being served, not by this list.
CONTRACT_OPERATIONS = {
    ("POST", "/v1/tasks"),
    ("POST", "/v1/tasks/batch"),
    ("GET", "/v1/tasks"),
    ("GET", "/v1/tasks/{task_id}"),
    ("DELETE", "/v1/tasks/{task_id}"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/{event_id}"),
    ("GET", "/v1/events/{event_id}/deliveries"),
    ("POST", "/v1/events/{event_id}/redeliver"),
    ("POST", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions/{subscription_id}"),
    ("GET", "/v1/subscriptions/{subscription_id}/secret"),
    ("PATCH", "/v1/subscriptions/{subscription_id}"),
    ("DELETE", "/v1/subscriptions/{subscription_id}"),
    ("POST", "/v1/subscriptions/{subscription_id}/rotate-secret"),
    ("POST", "/v1/subscriptions/{subscription_id}/recover"),
    ("POST", "/v1/checks"),
    ("GET", "/v1/callback-url"),
}


def test_every_route_outside_v1_is_a_deliberately_public_one(
    security_app_running: FastAPI,
) -> None:
    unexpected = {
        op.path
        for op in served_operations(security_app_running)
        if not op.path.startswith(("/v1/", PORTAL_PREFIX)) and op.path not in PUBLIC_PATHS
    }
    assert unexpected == set()


async def test_every_portal_route_but_sign_in_refuses_a_caller_without_a_session(
    security_app_running: FastAPI, api: httpx.AsyncClient
) -> None:
    guarded = [
        op
        for op in served_operations(security_app_running)
        if op.path.startswith(PORTAL_PREFIX) and op.path not in PUBLIC_PATHS
    ]
    assert guarded, "the portal serves pages"
    for op in guarded:
        path = op.path.replace("{event_id}", "evt_0").replace("{subscription_id}", "sub_0")
        path = path.replace("{task_id}", "T-1")
        response = await api.request(op.method, path, headers=bearer(generate_api_key()))
        # To the sign-in page, or refused outright: never the page or the action.
        assert response.status_code in {303, 401, 403}, (op, response.status_code)
        if response.status_code == 303:
            assert response.headers["location"] == f"{PORTAL_PREFIX}/sign-in", op


def test_the_served_v1_routes_include_every_contract_operation(
    security_app_running: FastAPI,
) -> None:
    served = {(op.method, op.path) for op in v1_operations(security_app_running)}
    assert served >= CONTRACT_OPERATIONS


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATIONS.values(), ids=BAD_AUTHORIZATIONS)
async def test_every_v1_route_answers_401_without_a_valid_key(
    api: httpx.AsyncClient, security_app_running: FastAPI, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for op in v1_operations(security_app_running):
        response = await api.request(
            op.method, op.url(), json={} if op.takes_body else None, headers=headers
        )
        where = (op.method, op.path)
        assert response.status_code == 401, where
        assert response.headers["content-type"] == "application/problem+json", where
        assert response.headers["www-authenticate"].startswith("Bearer"), where
        assert response.json()["status"] == 401, where
        presented = (authorization or "").partition(" ")[2].strip()
        if len(presented) > 8:
            assert presented not in response.text, where


async def test_another_clients_key_with_one_character_changed_answers_401(
    api: httpx.AsyncClient, alice: Tenant
) -> None:
    last = alice.key[-1]
    forged = alice.key[:-1] + ("A" if last != "A" else "B")
    response = await api.get("/v1/tasks", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert (await api.get("/v1/tasks", headers=alice.headers)).status_code == 200


async def test_the_database_holds_no_api_key_in_clear(
    alice: Tenant, sessions: async_sessionmaker[AsyncSession]
) -> None:
    random_part = alice.key[len(API_KEY_PREFIX) :]
    async with sessions() as session:
        stored = (
            await session.execute(
                text("SELECT key_hash FROM api_keys WHERE client_id = :c"), {"c": alice.id}
            )
        ).scalar_one()
        assert bytes(stored) == hashlib.sha256(alice.key.encode()).digest()
        tables = (
            await session.execute(
                text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'")
            )
        ).scalars()
        for table in list(tables):
            # The whole row as text: every column, in every table, including JSON and bytes.
            leaks = (
                await session.execute(
                    text(f"SELECT count(*) FROM {table} t WHERE strpos(t::text, :secret) > 0"),  # noqa: S608
                    {"secret": random_part},
                )
            ).scalar_one()
            assert leaks == 0, table


def _calls_in(function: object) -> set[str]:
    """The dotted names of everything `function` calls, from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    return {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}


def test_keys_are_looked_up_by_digest_and_compared_in_constant_time() -> None:
    # authenticate hands the key to sign_in (shared with the portal's sign-in), which digests it;
    # client_of_key_digest (shared with the portal's sessions) looks the digest up and compares.
    assert "sign_in" in _calls_in(auth.authenticate)
    assert "api_key_digest" in _calls_in(auth.sign_in)
    assert "client_of_key_digest" in _calls_in(auth.sign_in)
    calls = _calls_in(auth.client_of_key_digest)
    assert "find_active_key" in calls
    assert "hmac.compare_digest" in calls
    # Only compare_digest compares key material: no ==/!= touches the key, its digest or the
    # stored hash (an early-exit comparison would tell how much of a guess was right).
    for function in (auth.authenticate, auth.sign_in, auth.client_of_key_digest):
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        compared = [
            ast.unparse(node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Compare)
            and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
            and any(word in ast.unparse(node) for word in ("key", "digest", "hash"))
        ]
        assert compared == [], function
    # The lookup goes by the digest, never by the key.
    lookup = " ".join(clients._FIND_ACTIVE_KEY.split())
    assert "WHERE k.key_hash = %(key_hash)s" in lookup
    assert "key_hash" in inspect.signature(clients.find_active_key).parameters
    assert api_key_digest("pbk_x") == hashlib.sha256(b"pbk_x").digest()
