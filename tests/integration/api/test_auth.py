"""Bearer authentication on every /v1 route, key storage, and client isolation on every route."""

from __future__ import annotations

import hashlib
import re
import secrets

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.keycache import KeyCache
from service.features.keys import API_KEY_PREFIX
from service.store.clients import StoredKey
from tests.support.api import BAD_AUTHORIZATIONS, bearer
from tests.support.factories import insert_event

# Every /v1 route of this area, with a body that would be valid.
V1_CALLS: list[tuple[str, str, dict[str, object] | None]] = [
    ("POST", "/v1/tasks", {"task_id": "T-auth"}),
    ("POST", "/v1/tasks/batch", {"tasks": [{"task_id": "T-auth"}]}),
    ("GET", "/v1/tasks", None),
    ("GET", "/v1/tasks/T-auth", None),
    ("DELETE", "/v1/tasks/T-auth", None),
    ("GET", "/v1/events", None),
    ("GET", "/v1/events/evt_0123456789abcdef0123456789abcdef", None),
]


async def test_every_v1_route_of_the_app_needs_a_key(
    api: httpx.AsyncClient, api_app: FastAPI
) -> None:
    """Also covers routes added later by other modules: none may answer without a key."""
    checked = 0
    for template, operations in api_app.openapi()["paths"].items():
        if not template.startswith("/v1/"):
            continue
        path = re.sub(r"\{[^}]+\}", "x1", template)
        for method in operations:
            response = await api.request(method.upper(), path, json={})
            assert response.status_code == 401, (method, template, response.status_code)
            checked += 1
    assert checked >= len(V1_CALLS)


@pytest.mark.parametrize(("method", "path", "body"), V1_CALLS)
@pytest.mark.parametrize("authorization", BAD_AUTHORIZATIONS.values(), ids=BAD_AUTHORIZATIONS)
async def test_v1_route_without_a_valid_key_answers_401(
    api: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, object] | None,
    authorization: str | None,
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await api.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem = response.json()
    assert problem["status"] == 401
    presented = (authorization or "").partition(" ")[2].strip()
    if len(presented) > 8:
        assert presented not in response.text


async def test_401_comes_before_validation_of_the_body(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/tasks", content=b"{not json")
    assert response.status_code == 401


async def test_only_the_digest_of_a_key_is_stored(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert key.startswith(API_KEY_PREFIX)
    assert len(key) >= len(API_KEY_PREFIX) + 43  # 32 random bytes in base64
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT key_hash, prefix FROM api_keys WHERE key_hash = :h"),
                {"h": hashlib.sha256(key.encode()).digest()},
            )
        ).one()
        dump = (await session.execute(text("SELECT api_keys::text FROM api_keys"))).scalars()
        assert all(key not in line and key[len(API_KEY_PREFIX) :] not in line for line in dump)
    assert row.prefix == key[: len(row.prefix)]
    assert len(row.prefix) < 16


async def test_a_revoked_key_stops_working_once_its_cache_entry_is_gone(
    api: httpx.AsyncClient,
    api_app: FastAPI,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert (await api.get("/v1/tasks", headers=bearer(key))).status_code == 200
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE key_hash = :h"),
            {"h": hashlib.sha256(key.encode()).digest()},
        )
    api_app.state.resources.keys.forget_all()
    assert (await api.get("/v1/tasks", headers=bearer(key))).status_code == 401


def test_key_cache_forgets_entries_after_their_ttl_and_when_full() -> None:
    now = [100.0]
    cache = KeyCache(ttl_s=5.0, max_entries=2, clock=lambda: now[0])
    a, b, c = (StoredKey(n, n, bytes([n]) * 32, None, None) for n in (1, 2, 3))
    cache.remember(b"a", a)
    cache.remember(b"b", b)
    assert cache.find(b"a") == a
    cache.remember(b"c", c)  # full: the oldest entry goes
    assert cache.find(b"a") is None
    assert cache.find(b"b") == b
    now[0] += 5.0
    assert cache.find(b"b") is None
    assert cache.find(b"c") is None


# --- isolation --------------------------------------------------------------------------------


async def test_another_clients_task_is_invisible_on_every_task_route(
    api: httpx.AsyncClient, key: str, other_key: str
) -> None:
    task_id = f"I-{secrets.token_hex(4)}"
    mine = await api.post("/v1/tasks", json={"task_id": task_id}, headers=bearer(key))
    assert mine.status_code == 201

    assert (await api.get(f"/v1/tasks/{task_id}", headers=bearer(other_key))).status_code == 404
    assert (await api.delete(f"/v1/tasks/{task_id}", headers=bearer(other_key))).status_code == 404
    listing = await api.get("/v1/tasks", headers=bearer(other_key))
    assert listing.json() == {"data": [], "next_cursor": None}
    # A cursor is only a position: another client's cursor shows nothing of the first client.
    for n in range(3):
        await api.post("/v1/tasks", json={"task_id": f"{task_id}-{n}"}, headers=bearer(key))
    cursor = (await api.get("/v1/tasks?limit=1", headers=bearer(key))).json()["next_cursor"]
    stolen = await api.get(f"/v1/tasks?cursor={cursor}", headers=bearer(other_key))
    assert stolen.json()["data"] == []

    # The same task_id is a separate task for the other client.
    theirs = await api.post("/v1/tasks", json={"task_id": task_id}, headers=bearer(other_key))
    assert theirs.status_code == 201
    batch = await api.post(
        "/v1/tasks/batch", json={"tasks": [{"task_id": f"{task_id}-0"}]}, headers=bearer(other_key)
    )
    assert batch.json()["results"][0]["outcome"] == "created"
    # The other client's cancel touched only its own task.
    await api.delete(f"/v1/tasks/{task_id}", headers=bearer(other_key))
    assert (await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))).json()["state"] == "pending"


async def test_another_clients_event_is_invisible_on_every_event_route(
    api: httpx.AsyncClient, key: str, other_key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    event_id = await insert_event(api, sessions, key, f"I-{secrets.token_hex(4)}")
    assert (await api.get(f"/v1/events/{event_id}", headers=bearer(key))).status_code == 200

    assert (await api.get(f"/v1/events/{event_id}", headers=bearer(other_key))).status_code == 404
    feed = await api.get("/v1/events", headers=bearer(other_key))
    assert feed.json() == {"data": [], "next_cursor": None}
    after = await api.get(f"/v1/events?after={event_id}", headers=bearer(other_key))
    assert after.status_code == 422
