"""One in-process simulator for the directory, emptied before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.sim.server import SimServer
from service.sim.state import SimOptions
from tests.support.upstream import API_ID, API_SECRET, SEED


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimServer]:
    with SimServer(SimOptions(api_id=API_ID, api_secret=API_SECRET, seed=SEED)) as server:
        yield server


@pytest.fixture
def sim(sim_server: SimServer) -> SimServer:
    sim_server.control.reset()
    return sim_server


@pytest.fixture(scope="session")
def upstream_client(sim_server: SimServer) -> Iterator[httpx.Client]:
    headers = {"X-DF-API-ID": API_ID, "X-DF-API-SECRET": API_SECRET}
    with httpx.Client(base_url=sim_server.base_url, headers=headers, timeout=5.0) as client:
        yield client


@pytest.fixture(scope="session")
def anonymous_client(sim_server: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_server.base_url, timeout=5.0) as client:
        yield client


@pytest.fixture
def upstream(sim: SimServer, upstream_client: httpx.Client) -> httpx.Client:
    """A client that calls the (freshly reset) simulator the way phonebridge calls AccuAuth."""
    return upstream_client


@pytest.fixture
def anonymous(sim: SimServer, anonymous_client: httpx.Client) -> httpx.Client:
    """A client without credentials."""
    return anonymous_client
