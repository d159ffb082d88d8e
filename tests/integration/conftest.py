"""Fixtures shared by the integration directories: the run's Redis database as a client (the
simulator and the flushed Redis are tests/conftest.py's, shared with tests/security)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis[Any]]:
    client: Redis[Any] = Redis.from_url(redis_url)
    yield client
    await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
