"""What the benchmarks share: a scratch database on the machine's PostgreSQL, dropped at the end.

The benchmarks import it as `support`: `.venv/bin/python bench/NAME.py` puts bench/ first on
sys.path. (tests/support/databases.py does the same for the tests; bench keeps its own so that it
runs without the test suite on the path.)

Environment:
  PHONEBRIDGE_BENCH_ADMIN_URL  a PostgreSQL URL allowed to CREATE DATABASE; when unset,
  PHONEBRIDGE_TEST_ADMIN_URL   the tests' one (default postgresql://postgres@127.0.0.1:5432/postgres)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import psycopg

from service.store.migrate import upgrade_to_head

ADMIN_URL = os.environ.get("PHONEBRIDGE_BENCH_ADMIN_URL") or os.environ.get(
    "PHONEBRIDGE_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass(frozen=True)
class ScratchDatabase:
    name: str
    url: str
    """postgresql://..., for psycopg and for PHONEBRIDGE_DATABASE_URL."""

    @property
    def sqlalchemy_url(self) -> str:
        """The same database for SQLAlchemy, with the psycopg (3) driver named."""
        return self.url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def scratch_database(prefix: str, *, migrated: bool = False) -> Iterator[ScratchDatabase]:
    """A new database named `prefix` plus a random suffix, at the schema's head when `migrated`
    (otherwise empty, for a benchmark that runs `phonebridge migrate` itself); dropped afterwards,
    whatever its connections are doing."""
    name = f"{prefix}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = ScratchDatabase(name, ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        if migrated:
            upgrade_to_head(database.sqlalchemy_url)
        yield database
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and its children (none once it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (0 once it is gone)."""
    total = 0.0
    for process in process_tree(pid):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total
