"""Shared fixtures. Integration tests use the machine's real PostgreSQL and Redis: each test run
creates its own database (migrated with the project's Alembic migrations) and its own Redis
database number, and drops them at the end (see tests/support/databases.py for the variables
that point them elsewhere)."""

from __future__ import annotations

import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hypothesis
import pytest
import redis
from _pytest.nodeid import NodeId
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from xdist.scheduler import LoadScopeScheduling

from service.config import Settings
from service.sim.server import SimServer
from service.sim.state import SimOptions
from service.store.db import create_engine_for, session_factory
from service.store.migrate import upgrade_to_head
from tests.support.databases import claimed_redis_database, scratch_database
from tests.support.receivers import Receiver, running_receiver
from tests.support.settings import make_settings
from tests.support.upstream import API_ID, API_SECRET

# Hypothesis's time limits measure the machine, not the property: on two pytest-xdist workers
# beside real processes an example can take a second. Speed is bench/'s business.
hypothesis.settings.register_profile(
    "phonebridge",
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile("phonebridge")

# Ctrl-C reaches the commands the tests start as it would from a terminal, however the suite was
# started. A shell starts a script's background job (`scripts/test &`) with SIGINT ignored, and
# every process inherits that through fork and exec: `phonebridge check-file`, which stops
# waiting on KeyboardInterrupt, then ignored the test's Ctrl-C and ran its job to the end (exit
# 0, not 130). A handler set here is reset to the default in each command this process execs.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The chaos suite shares one stack (tests/chaos/conftest.py), so pytest-xdist gives all of it to
# one worker instead of starting a stack on each.
CHAOS = "tests/chaos/"
ROOT = Path(__file__).resolve().parents[1]


# A module whose every test is slow says so at its top (`pytestmark = pytest.mark.slow`, or a
# list that starts with it).
WHOLLY_SLOW = re.compile(r"^pytestmark = \[?\s*pytest\.mark\.slow\b", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The quick loop (`-m "not slow"`) does not import what it would run nothing of: the chaos
    folder and the modules marked slow as a whole (schemathesis, the browser, real processes).
    Importing them cost each pytest-xdist worker about 3 s of CPU before the first test."""
    if config.getoption("markexpr") != "not slow":
        return None
    if collection_path.is_dir():
        return True if collection_path == ROOT / CHAOS else None
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return True if WHOLLY_SLOW.search(collection_path.read_text()) else None
    return None


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LoadScopeScheduling | None:
    if config.getoption("dist") != "loadfile":
        return None  # pytest-xdist's own scheduler for the mode asked for
    return LongestFilesFirst(config, log)


class LongestFilesFirst(LoadScopeScheduling):
    """`--dist loadfile` with two changes: the chaos folder is one unit, and units go out in the
    order the workers collected them (longest first, see pytest_collection_modifyitems) rather
    than by their number of tests, which sent the newcomer test (one test, a minute or more)
    out last and left the other worker idle for that minute."""

    def __init__(self, config: pytest.Config, log: object = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.startswith(CHAOS):
            return CHAOS
        return nodeid.split("::", 1)[0]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files whose tests may run longest first, the rest in their usual order: a test's timeout
    marker is its statement of how long it may take (the newcomer test 900 s, a chaos scenario
    300 s), and `slow` marks the ones that start real processes. Tests of one file stay
    together, so no module fixture is set up twice."""
    rank: dict[str, tuple[int, float]] = {}
    for item in items:
        timeout = item.get_closest_marker("timeout")
        limit = float(timeout.args[0]) if timeout is not None and timeout.args else 0.0
        cost = (1 if item.get_closest_marker("slow") else 0, limit)
        path = str(item.path)
        rank[path] = max(rank.get(path, cost), cost)
    items.sort(key=lambda item: tuple(-part for part in rank[str(item.path)]))
    give_each_item_its_own_id(items)


def give_each_item_its_own_id(items: list[pytest.Item]) -> None:
    """Schemathesis names each operation's test `test_x[GET /path]` but gives every one of them
    the function's node id, and pytest-xdist tells tests apart by node id: on two workers only
    the first operation's test ran (1 of 23), the others were dropped without a word. Each
    item's id ends with its own name (pytest 9 keeps the id structured, in `_id`)."""
    for item in items:
        parent_id, _, last = item.nodeid.rpartition("::")
        if parent_id and last != item.name:
            item._id = NodeId.parse(f"{parent_id}::{item.name}")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this test run, at the schema's head revision."""
    with scratch_database("phonebridge_test") as url:
        upgrade_to_head(url)
        yield url


@pytest.fixture
def empty_database() -> Iterator[str]:
    """An empty database of the test's own (no schema: the test migrates it)."""
    with scratch_database("phonebridge_empty") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number of this process's own (each pytest-xdist worker claims one; so
    does any other test run on the machine), emptied before and after."""
    with claimed_redis_database() as url:
        yield url


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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook receiver of the test's own."""
    with running_receiver() as server:
        yield server


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    with SimServer(SimOptions(api_id=API_ID, api_secret=API_SECRET)) as server:
        yield server


@pytest.fixture
def fresh_sim(sim: SimServer) -> Iterator[SimServer]:
    """The simulator without the scripts, faults and calls of earlier tests; reset again after
    this one, so that a later test given the shared `sim` as it is (most settings fixtures are)
    meets none of this one's scripts or faults either."""
    sim.control.reset()
    yield sim
    sim.control.reset()


@pytest.fixture
def flush_redis(redis_url: str) -> Iterator[None]:
    """Limiter, pause and broker state from an earlier test must not leak into this one."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield
    client.close()
