"""Shared fixtures. Integration tests use the machine's real PostgreSQL and Redis: each test run
creates its own database (migrated with the project's Alembic migrations) and its own Redis
database number, and drops them at the end.

Environment:
  PHONEBRIDGE_TEST_ADMIN_URL  a PostgreSQL URL allowed to CREATE DATABASE
                              (default postgresql://postgres@127.0.0.1:5432/postgres)
  PHONEBRIDGE_TEST_REDIS_URL  a Redis server (default redis://127.0.0.1:6379)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings, build_settings
from service.store.db import create_engine_for, session_factory
from service.store.migrate import upgrade_to_head

ADMIN_URL = os.environ.get(
    "PHONEBRIDGE_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_SERVER = os.environ.get("PHONEBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")


def _with_database(url: str, name: str) -> str:
    base = url.rsplit("/", 1)[0]
    return f"{base}/{name}"


def create_database(name: str) -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_database(ADMIN_URL, name).replace("postgresql://", "postgresql+psycopg://", 1)


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this test run, at the schema's head revision."""
    name = f"phonebridge_test_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(name)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number of its own for this run, emptied before and after."""
    number = 1 + (os.getpid() % 15)
    url = f"{REDIS_SERVER}/{number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings for tests: the run's own services, fast schedules; overrides win."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "upstream_api_id": "test-api-id",
        "upstream_api_secret": "test-api-secret-value",
        "secret_key": "test-secret-key-for-webhook-secrets-at-rest",
    }
    values.update(overrides)
    return build_settings(**values)


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)
