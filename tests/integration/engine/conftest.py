"""The polling engine's integration fixtures: the upstream simulator reset for each test and real
engine processes stopped at the end (a task table without other tests' pending tasks is
tests/integration/conftest.py's, shared with the claim's store tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.sim.server import SimServer
from tests.support.engine import Processes
from tests.support.settings import process_env


@pytest.fixture
def processes(
    database_url: str, redis_url: str, fresh_sim: SimServer, tmp_path: Path
) -> Iterator[Processes]:
    running = Processes(process_env(database_url, redis_url, fresh_sim.base_url), tmp_path)
    yield running
    running.stop_all()
