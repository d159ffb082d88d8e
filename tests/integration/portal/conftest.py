"""The portal's fixtures: the real app (allowing the local receiver's private address) with its
lifespan running, and a signed-in browser-like client of a new client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from service.api.app import create_app
from tests.support.factories import new_key
from tests.support.portal import portal_browser, sign_in
from tests.support.settings import webhook_settings


@pytest.fixture(scope="session")
async def portal_app(database_url: str, redis_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(webhook_settings(database_url, redis_url))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def key(portal_app: FastAPI) -> str:
    return await new_key(portal_app.state.settings)


@pytest.fixture
async def person(portal_app: FastAPI, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A signed-in portal user of the client of `key`."""
    async with portal_browser(portal_app) as client:
        response = await sign_in(client, key)
        assert response.status_code == 303, response.text
        yield client


@pytest.fixture
async def api(portal_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=portal_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client
