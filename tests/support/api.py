"""The phonebridge API as the tests speak to it: in-process over ASGI, authenticated by a key,
and its event feed read until it shows what was written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from service.api.app import create_app
from service.config import Settings
from service.features.keys import API_KEY_PREFIX, generate_api_key
from service.webhooks.guard import HostResolver
from tests.support.waiting import wait_until_async

# The feed shows an event only once every older transaction of the whole server has ended; other
# test processes may hold one open for a moment, so visibility is awaited, within this bound.
FEED_SETTLE_S = 15.0


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def json_bearer(key: str) -> dict[str, str]:
    """The headers of a /v1 call with a JSON body sent as raw bytes (httpx's `json=` sets the
    content type itself)."""
    return {**bearer(key), "content-type": "application/json"}


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client calling `app` in-process (its lifespan is the caller's to run)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://phonebridge.test") as client:
        yield client


@asynccontextmanager
async def api_client(
    settings: Settings, resolver: HostResolver | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (lifespan included) over ASGI; `resolver` vets webhook hosts instead of DNS."""
    app = create_app(settings, resolver=resolver)
    async with app.router.lifespan_context(app), asgi_client(app) as http:
        http.app = app  # type: ignore[attr-defined]
        yield http


async def feed(api: httpx.AsyncClient, key: str, query: str = "") -> dict[str, Any]:
    response = await api.get(f"/v1/events?{query}", headers=bearer(key))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def feed_until(
    api: httpx.AsyncClient, key: str, count: int, query: str = ""
) -> dict[str, Any]:
    """The feed's first page once it holds `count` events (see FEED_SETTLE_S)."""

    async def page_with_enough() -> dict[str, Any] | None:
        page = await feed(api, key, query)
        return page if len(page["data"]) >= count else None

    page: dict[str, Any] = await wait_until_async(
        page_with_enough, timeout_s=FEED_SETTLE_S, what=f"{count} events in the feed"
    )
    return page


# Authorization headers that must each answer 401 on every /v1 route (None: no header at all).
BAD_AUTHORIZATIONS: dict[str, str | None] = {
    "missing": None,
    "empty": "",
    "basic scheme": "Basic dXNlcjpwYXNz",
    "bearer alone": "Bearer",
    "bearer and blanks": "Bearer    ",
    "not a key": "Bearer not-a-key",
    "sql in the key": "Bearer pbk_' OR '1'='1",
    "short key": f"Bearer {API_KEY_PREFIX}abc",
    "truncated key": f"Bearer {generate_api_key()[:-1]}",
    "key with a bad character": "Bearer " + generate_api_key()[:-1] + "!",
    "key without its prefix": "Bearer " + generate_api_key()[len(API_KEY_PREFIX) :],
    "two keys": f"Bearer {generate_api_key()} {generate_api_key()}",
    "unknown key": f"Bearer {generate_api_key()}",
    "token scheme": f"Token {generate_api_key()}",
    "key without a scheme": generate_api_key(),
}
