"""The polling engine's integration fixtures: the upstream simulator reset for each test, a task
table without other tests' pending tasks, and real engine processes stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.sim.server import SimServer
from tests.support.engine import Processes
from tests.support.rows import cancel_pending_tasks
from tests.support.settings import process_env


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
