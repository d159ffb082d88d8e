"""Fixtures shared by the integration directories: the upstream simulator phonebridge is
configured for in tests, and the run's Redis database, flushed or as a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from service.sim.server import SimServer
from service.sim.state import SimOptions
from tests.support.upstream import API_ID, API_SECRET


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    with SimServer(SimOptions(api_id=API_ID, api_secret=API_SECRET)) as server:
        yield server


@pytest.fixture
def fresh_sim(sim: SimServer) -> SimServer:
    """The simulator without the scripts, faults and calls of earlier tests."""
    sim.control.reset()
    return sim


@pytest.fixture
def flush_redis(redis_url: str) -> Iterator[None]:
    """Limiter, pause and broker state from an earlier test must not leak into this one."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield
    client.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis[Any]]:
    client: Redis[Any] = Redis.from_url(redis_url)
    yield client
    await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
