"""The machine's PostgreSQL and Redis, as the tests use them: databases created for a run (or a
test) and dropped after it.

Environment:
  PHONEBRIDGE_TEST_ADMIN_URL  a PostgreSQL URL allowed to CREATE DATABASE
                              (default postgresql://postgres@127.0.0.1:5432/postgres)
  PHONEBRIDGE_TEST_REDIS_URL  a Redis server (default redis://127.0.0.1:6379)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

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


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A database of its own, named `prefix` plus this process and a random suffix; dropped
    afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)
