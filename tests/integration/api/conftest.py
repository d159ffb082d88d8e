"""Fixtures of the API tests: the app with its lifespan running against the run's own Postgres and
Redis, an HTTP client speaking to it in-process, and freshly minted API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from service.api.app import create_app
from service.config import Settings
from tests.support.api import asgi_client
from tests.support.factories import new_key


@pytest.fixture(scope="session")
async def api_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(api_app) as client:
        yield client


@pytest.fixture
async def key(settings: Settings) -> str:
    """The key of a new client, so every test starts with a client that owns nothing."""
    return await new_key(settings)


@pytest.fixture
async def other_key(settings: Settings) -> str:
    return await new_key(settings)
