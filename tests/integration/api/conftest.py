"""Fixtures of the API tests: the app with its lifespan running against the run's own Postgres and
Redis, an HTTP client speaking to it in-process, and freshly minted API keys."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from service.accounts import create_client_and_key
from service.api.app import create_app
from service.config import Settings


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
async def api_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://phonebridge.test") as client:
        yield client


async def new_key(settings: Settings) -> str:
    return await create_client_and_key(settings, f"client-{secrets.token_hex(4)}")


@pytest.fixture
async def key(settings: Settings) -> str:
    """The key of a new client, so every test starts with a client that owns nothing."""
    return await new_key(settings)


@pytest.fixture
async def other_key(settings: Settings) -> str:
    return await new_key(settings)
