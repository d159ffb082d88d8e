"""Fixtures of the security tests: the real app (lifespan included) over ASGI, a resolver that
answers webhook hosts from a table (no test reaches real DNS), and tenants: clients with their
own tasks, events, subscriptions and deliveries, so isolation has something to leak."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.sim.server import SimServer
from tests.support.api import asgi_client
from tests.support.resolvers import security_app
from tests.support.settings import make_settings
from tests.support.tenants import Tenant, new_tenant


@pytest.fixture(scope="session")
def security_settings(database_url: str, redis_url: str, sim: SimServer) -> Settings:
    # Private webhook addresses stay refused, as in production. Checks are submitted to the
    # simulator (never to AccuAuth), with a ceiling no generated burst reaches.
    return make_settings(
        database_url,
        redis_url,
        webhook_allow_private=False,
        upstream_base_url=sim.base_url,
        upstream_max_rps=100_000.0,
        public_url="http://phonebridge.test",
    )


@pytest.fixture(scope="session")
async def security_app_running(security_settings: Settings) -> AsyncIterator[FastAPI]:
    app = security_app(security_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def api(security_app_running: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(security_app_running) as client:
        yield client


@pytest.fixture
async def alice(
    api: httpx.AsyncClient, security_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Tenant:
    return await new_tenant(api, security_settings, sessions)


@pytest.fixture
async def mallory(
    api: httpx.AsyncClient, security_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Tenant:
    return await new_tenant(api, security_settings, sessions)


@pytest.fixture(autouse=True)
def sim_without_earlier_faults(fresh_sim: SimServer) -> SimServer:
    """The checks these tests submit reach the run's simulator, which the tests before them in this
    worker may have left with scripted faults: one answered a `POST /v1/checks` of
    test_injection.py with an error (502 `SUBMIT_OUTCOME_UNKNOWN`) in a full run."""
    return fresh_sim
