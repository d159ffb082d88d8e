"""The polling engine's integration fixtures: the upstream simulator, a clean Redis and task
table for each test, and real engine processes stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.sim.server import SimServer
from service.sim.state import SimOptions
from tests.support.engine import Processes
from tests.support.rows import cancel_pending_tasks
from tests.support.settings import process_env
from tests.support.upstream import API_ID, API_SECRET


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    with SimServer(SimOptions(api_id=API_ID, api_secret=API_SECRET)) as server:
        yield server


@pytest.fixture
def fresh_sim(sim: SimServer) -> SimServer:
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
async def no_foreign_pending_tasks(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Tasks that earlier tests (of any directory) left pending in this run's database would be
    due before ours and eat the rate budget of an engine started here: they are cancelled (their
    tests are over)."""
    await cancel_pending_tasks(sessions)


@pytest.fixture
def processes(
    database_url: str, redis_url: str, fresh_sim: SimServer, tmp_path: Path
) -> Iterator[Processes]:
    running = Processes(process_env(database_url, redis_url, fresh_sim.base_url), tmp_path)
    yield running
    running.stop_all()
