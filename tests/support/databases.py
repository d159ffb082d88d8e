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
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import psycopg
import redis

ADMIN_URL = os.environ.get(
    "PHONEBRIDGE_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_SERVER = os.environ.get("PHONEBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
# Redis numbers its databases 0-15; 0 holds the claims below, the tests share 1-15.
REDIS_DATABASES = range(1, 16)
# A claim outlives any run; one left by a run killed with SIGKILL on another machine expires.
REDIS_CLAIM_TTL_S = 6 * 3600


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


@contextmanager
def claimed_redis_database() -> Iterator[str]:
    """A Redis database number no other test process uses while this one holds it: claimed with
    SET NX in database 0 (a number picked from the process id collided between concurrent runs
    and between pytest-xdist workers), emptied before and after, released at the end. A claim
    left by a dead process of this machine is taken over."""
    admin = redis.Redis.from_url(f"{REDIS_SERVER}/0")
    owner = f"{socket.gethostname()}:{os.getpid()}"
    try:
        number = next((n for n in REDIS_DATABASES if _claim(admin, n, owner)), None)
        if number is None:
            raise RuntimeError(f"every Redis database of {REDIS_SERVER} is claimed by a test run")
        url = f"{REDIS_SERVER}/{number}"
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
            yield url
            client.flushdb()
        finally:
            client.close()
            if admin.get(_claim_key(number)) == owner.encode():
                admin.delete(_claim_key(number))
    finally:
        admin.close()


def _claim_key(number: int) -> str:
    return f"phonebridge-tests:claim:{number}"


def _claim(admin: redis.Redis[bytes], number: int, owner: str) -> bool:
    key = _claim_key(number)
    if admin.set(key, owner, nx=True, ex=REDIS_CLAIM_TTL_S):
        return True
    holder = admin.get(key)
    if holder is None:
        return bool(admin.set(key, owner, nx=True, ex=REDIS_CLAIM_TTL_S))
    host, _, pid = holder.decode().rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or psutil.pid_exists(int(pid)):
        return False
    # A dead process's claim: taken over only if it is still that one's.
    return bool(admin.eval(_TAKE_OVER, 1, key, holder, owner, REDIS_CLAIM_TTL_S))  # type: ignore[no-untyped-call]


_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
