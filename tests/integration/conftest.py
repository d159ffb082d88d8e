"""Fixtures shared by the integration directories: the run's Redis database as a client, an
autocommit psycopg connection as the API's hot pool lends one, an asyncpg one as its intake pool
lends one, the settings of an API whose
webhooks may go to the local receiver, no learnt completion times, and no pending tasks left by
earlier tests (the simulator and the flushed Redis are tests/conftest.py's, shared with
tests/security)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import psycopg
import pytest
from asyncpg.pool import PoolConnectionProxy
from psycopg.rows import DictRow, dict_row
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.resources import libpq_url, new_intake_pool
from service.config import Settings
from tests.support.estimates import clear_estimates
from tests.support.rows import cancel_pending_tasks
from tests.support.settings import webhook_settings


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis[Any]]:
    client: Redis[Any] = Redis.from_url(redis_url)
    yield client
    await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


@pytest.fixture(scope="session")
def hook_settings(database_url: str, redis_url: str) -> Settings:
    """Webhooks to the local receiver (a private address), short timeouts and retries."""
    return webhook_settings(database_url, redis_url)


@pytest.fixture
async def no_estimates(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    """No learnt completion times before the test, nor after it for the next one."""
    await clear_estimates(sessions)
    yield
    await clear_estimates(sessions)


@pytest.fixture
async def no_foreign_pending_tasks(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Tasks that earlier tests (of any directory) left pending in this run's database would be
    due before ours and eat the rate budget of an engine started here, or a claim's turns: they
    are cancelled (their tests are over)."""
    await cancel_pending_tasks(sessions)


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
    """An autocommit psycopg connection, as the API's hot pool lends one."""
    connection = await psycopg.AsyncConnection.connect(
        libpq_url(settings.sqlalchemy_url), autocommit=True, row_factory=dict_row
    )
    async with connection:
        yield connection


@pytest.fixture
async def intake_conn(settings: Settings) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
    """A connection of the API's asyncpg intake pool (single registrations)."""
    pool = await new_intake_pool(settings)
    try:
        async with pool.acquire() as connection:
            yield connection
    finally:
        await pool.close()
