"""The /v1/subscriptions routes over HTTP, against the real app, Postgres and Redis."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from tests.support.api import api_client
from tests.support.factories import ApiClient, new_client
from tests.support.resolvers import TableResolver
from tests.support.settings import webhook_settings

ALL_TYPES = ["task.completed", "task.expired", "task.failed"]


@pytest.fixture(scope="module")
async def api(hook_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API of the webhook tests: subscriptions here point at a local (private) address."""
    async with api_client(hook_settings) as http:
        yield http


@pytest.fixture
async def alice(hook_settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> ApiClient:
    return await new_client(hook_settings, sessions)


@pytest.fixture
async def bob(hook_settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> ApiClient:
    return await new_client(hook_settings, sessions)


async def _create(api: httpx.AsyncClient, who: ApiClient, **body: Any) -> dict[str, Any]:
    body.setdefault("url", "http://127.0.0.1:9/hook")
    response = await api.post("/v1/subscriptions", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_answers_the_subscription_with_a_whsec_secret(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    created = await _create(api, alice, description="orders")
    assert created["id"].startswith("sub_")
    assert created["event_types"] == ALL_TYPES
    assert (created["enabled"], created["description"]) == (True, "orders")
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) >= 24


async def test_get_and_list_never_show_the_secret_but_the_secret_route_does(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    created = await _create(api, alice)
    one = (await api.get(f"/v1/subscriptions/{created['id']}", headers=alice.headers)).json()
    listed = (await api.get("/v1/subscriptions", headers=alice.headers)).json()
    assert "secret" not in one
    assert all("secret" not in item for item in listed["data"])
    assert created["secret"] not in str(listed)
    secret = await api.get(f"/v1/subscriptions/{created['id']}/secret", headers=alice.headers)
    assert secret.json() == {"secret": created["secret"]}


async def test_every_answer_that_carries_a_secret_is_no_store(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    created = await api.post(
        "/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"}, headers=alice.headers
    )
    sub = created.json()["id"]
    shown = await api.get(f"/v1/subscriptions/{sub}/secret", headers=alice.headers)
    rotated = await api.post(f"/v1/subscriptions/{sub}/rotate-secret", headers=alice.headers)
    for answer in (created, shown, rotated):
        assert "whsec_" in answer.text
        assert answer.headers["cache-control"] == "no-store"


async def test_the_database_holds_secrets_only_encrypted(
    api: httpx.AsyncClient, alice: ApiClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    created = await _create(api, alice)
    await api.post(f"/v1/subscriptions/{created['id']}/rotate-secret", headers=alice.headers)
    async with sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT secret_encrypted, previous_secret_encrypted FROM subscriptions "
                    "WHERE public_id = :p"
                ),
                {"p": created["id"]},
            )
        ).one()
    raw_key = base64.b64decode(created["secret"].removeprefix("whsec_"))
    for stored in row:
        assert created["secret"].encode() not in stored
        assert raw_key not in stored
        assert created["secret"].removeprefix("whsec_").encode() not in stored


async def test_event_types_filter_is_kept_deduplicated_and_unknown_types_refused(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    created = await _create(api, alice, event_types=["task.failed", "task.failed"])
    assert created["event_types"] == ["task.failed"]
    for bad in (["task.created"], [], "task.failed", [1]):
        response = await api.post(
            "/v1/subscriptions",
            json={"url": "http://127.0.0.1:9/", "event_types": bad},
            headers=alice.headers,
        )
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": "ftp://127.0.0.1/"},
        {"url": "not a url"},
        {"url": "http://127.0.0.1/", "description": "nul\x00"},
        {"url": "http://127.0.0.1/", "unknown": 1},
        {"url": "http://169.254.169.254/latest/meta-data/"},
        {"url": "http://127.0.0.1/" + "a" * 3000},
    ],
)
async def test_invalid_creations_answer_422(
    api: httpx.AsyncClient, alice: ApiClient, body: dict[str, Any]
) -> None:
    response = await api.post("/v1/subscriptions", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "word"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://100.64.0.1/hook", "CGNAT"),
        ("http://169.254.10.10/hook", "link-local"),
        ("http://[fd00::1]/hook", "unique-local"),
        ("http://[::ffff:192.168.0.1]/hook", "IPv4-mapped"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://localhost:8000/hook", "loopback"),
        ("https://internal.example/hook", "private"),
    ],
)
async def test_non_public_urls_are_refused_on_create_and_update_unless_allowed(
    database_url: str,
    redis_url: str,
    sessions: async_sessionmaker[AsyncSession],
    url: str,
    word: str,
) -> None:
    strict = webhook_settings(database_url, redis_url, webhook_allow_private=False)
    resolver = TableResolver(
        {"internal.example": [["10.9.8.7"]], "public.example": [["93.184.215.14"]]}
    )
    async with api_client(strict, resolver=resolver) as guarded:
        who = await new_client(strict, sessions)
        refused = await guarded.post("/v1/subscriptions", json={"url": url}, headers=who.headers)
        assert refused.status_code == 422
        assert word in refused.json()["detail"]
        fine = await _create(guarded, who, url="https://public.example/hook")
        patched = await guarded.patch(
            f"/v1/subscriptions/{fine['id']}", json={"url": url}, headers=who.headers
        )
        assert patched.status_code == 422
        assert word in patched.json()["detail"]


async def test_pagination_walks_every_subscription_once_newest_first(
    api: httpx.AsyncClient, hook_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    who = await new_client(hook_settings, sessions)
    made = [(await _create(api, who))["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/subscriptions", params=params, headers=who.headers)).json()
        seen += [item["id"] for item in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    for bad in ({"limit": 0}, {"limit": 501}, {"cursor": "garbage!"}):
        response = await api.get("/v1/subscriptions", params=bad, headers=who.headers)
        assert response.status_code == 422


async def test_patch_changes_the_given_fields_only(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    created = await _create(api, alice, description="before")
    response = await api.patch(
        f"/v1/subscriptions/{created['id']}",
        json={"event_types": ["task.expired"], "enabled": False},
        headers=alice.headers,
    )
    assert response.status_code == 200
    changed = response.json()
    assert changed["event_types"] == ["task.expired"]
    assert changed["enabled"] is False
    assert changed["description"] == "before"
    assert changed["url"] == created["url"]
    again = await api.patch(
        f"/v1/subscriptions/{created['id']}", json={"enabled": True}, headers=alice.headers
    )
    assert (again.json()["enabled"], again.json()["disabled_reason"]) == (True, None)
    for bad in ({"enabled": None}, {"enabled": "maybe"}, {"event_types": ["nope"]}, {"x": 1}):
        response = await api.patch(
            f"/v1/subscriptions/{created['id']}", json=bad, headers=alice.headers
        )
        assert response.status_code == 422, bad


async def test_include_job_items_defaults_to_true_and_is_set_on_create_and_patch(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    default = await _create(api, alice)
    assert default["include_job_items"] is True
    without = await _create(api, alice, include_job_items=False)
    assert without["include_job_items"] is False
    shown = await api.get(f"/v1/subscriptions/{without['id']}", headers=alice.headers)
    assert shown.json()["include_job_items"] is False
    changed = await api.patch(
        f"/v1/subscriptions/{without['id']}",
        json={"include_job_items": True},
        headers=alice.headers,
    )
    assert changed.json()["include_job_items"] is True
    for bad in ({"include_job_items": "no"}, {"include_job_items": None}):
        response = await api.patch(
            f"/v1/subscriptions/{without['id']}", json=bad, headers=alice.headers
        )
        assert response.status_code == 422, bad


async def test_delete_answers_204_and_the_subscription_is_gone(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    created = await _create(api, alice)
    path = f"/v1/subscriptions/{created['id']}"
    assert (await api.delete(path, headers=alice.headers)).status_code == 204
    assert (await api.get(path, headers=alice.headers)).status_code == 404
    assert (await api.delete(path, headers=alice.headers)).status_code == 404
    listed = (await api.get("/v1/subscriptions", headers=alice.headers)).json()
    assert created["id"] not in [item["id"] for item in listed["data"]]


async def test_rotate_secret_answers_a_new_secret_that_the_secret_route_then_shows(
    api: httpx.AsyncClient, alice: ApiClient
) -> None:
    created = await _create(api, alice)
    rotated = await api.post(
        f"/v1/subscriptions/{created['id']}/rotate-secret", headers=alice.headers
    )
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != created["secret"]
    shown = await api.get(f"/v1/subscriptions/{created['id']}/secret", headers=alice.headers)
    assert shown.json() == {"secret": new_secret}


async def test_recover_validates_its_window(api: httpx.AsyncClient, alice: ApiClient) -> None:
    created = await _create(api, alice)
    path = f"/v1/subscriptions/{created['id']}/recover"
    for bad in (
        {},
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},  # no timezone
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    ):
        assert (await api.post(path, json=bad, headers=alice.headers)).status_code == 422, bad
    ok = await api.post(path, json={"since": "2026-01-01T00:00:00Z"}, headers=alice.headers)
    assert ok.status_code == 202
    assert ok.json() == {"status": "accepted", "deliveries": 0, "recovered": 0, "missed": 0}


async def test_another_clients_subscription_answers_404_everywhere(
    api: httpx.AsyncClient, alice: ApiClient, bob: ApiClient
) -> None:
    created = await _create(api, alice)
    base = f"/v1/subscriptions/{created['id']}"
    calls = [
        api.get(base, headers=bob.headers),
        api.get(f"{base}/secret", headers=bob.headers),
        api.patch(base, json={"description": "x"}, headers=bob.headers),
        api.delete(base, headers=bob.headers),
        api.post(f"{base}/rotate-secret", headers=bob.headers),
        api.post(f"{base}/recover", json={"since": "2026-01-01T00:00:00Z"}, headers=bob.headers),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 404
        assert created["secret"] not in response.text
    listed = (await api.get("/v1/subscriptions", headers=bob.headers)).json()
    assert created["id"] not in [item["id"] for item in listed["data"]]
    still = await api.get(f"{base}/secret", headers=alice.headers)
    assert still.json() == {"secret": created["secret"]}


async def test_every_route_needs_an_api_key(api: httpx.AsyncClient) -> None:
    for method, path in [
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions/sub_x"),
        ("GET", "/v1/subscriptions/sub_x/secret"),
        ("PATCH", "/v1/subscriptions/sub_x"),
        ("DELETE", "/v1/subscriptions/sub_x"),
        ("POST", "/v1/subscriptions/sub_x/rotate-secret"),
        ("POST", "/v1/subscriptions/sub_x/recover"),
        ("GET", "/v1/events/evt_x/deliveries"),
        ("POST", "/v1/events/evt_x/redeliver"),
    ]:
        assert (await api.request(method, path)).status_code == 401, (method, path)
