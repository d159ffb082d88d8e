"""The polling engine's integration fixtures: the upstream simulator, compressed-time settings,
tasks inserted directly, and a running engine (the scheduler loop in this test's event loop and a
real Celery worker on a threads pool, with its own engine loop)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.engine.ratelimit import UpstreamRateLimiter
from service.engine.scheduler import Scheduler, SchedulerContext, default_steps
from service.sim.server import SimServer, phonebridge_executable
from service.sim.state import SimOptions
from service.store.db import create_engine_for, session_factory, transaction
from tests.conftest import make_settings
from workers.app import celery_poll_publisher, create_celery_app, runtime_of

API_ID = "test-api-id"
API_SECRET = "test-api-secret-value"


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
    tests are over; cancelled tasks are never polled)."""
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE tasks SET state = 'cancelled', completed_at = now(), next_poll_at = NULL,"
                " lease_token = NULL, lease_until = NULL WHERE state = 'pending'"
            )
        )


def engine_settings(database_url: str, redis_url: str, base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "upstream_base_url": base_url,
        "upstream_timeout_s": 2.0,
        "upstream_max_rps": 500.0,
        "poll_initial_s": 0.2,
        "poll_max_s": 0.4,
        "lease_s": 5.0,
        "scheduler_tick_s": 0.05,
        "poll_batch_size": 50,
        "pause_probe_s": 0.5,
        "task_ttl_s": 30.0,
    }
    values.update(overrides)
    return make_settings(database_url, redis_url, **values)


async def insert_client(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with transaction(sessions) as session:
        result = await session.execute(
            text("INSERT INTO clients (name) VALUES (:name) RETURNING id"),
            {"name": f"engine-test-{secrets.token_hex(4)}"},
        )
        return int(result.scalar_one())


async def insert_tasks(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    task_ids: Sequence[str],
    *,
    ttl_s: float = 30.0,
    now: datetime | None = None,
    next_poll_in_s: float = 0.0,
) -> list[int]:
    """Tasks as registration leaves them: pending, due at once, expiring `ttl_s` from now."""
    now = now or utc_now()
    async with transaction(sessions) as session:
        result = await session.execute(
            text(
                """
                INSERT INTO tasks (client_id, task_id, state, submitted_at, registered_at,
                                   expires_at, next_poll_at, poll_count, updated_at)
                SELECT :client_id, t, 'pending', :now, :now, :expires_at, :next_poll_at, 0, :now
                FROM unnest(CAST(:task_ids AS text[])) AS t
                RETURNING id
                """
            ),
            {
                "client_id": client_id,
                "task_ids": list(task_ids),
                "now": now,
                "expires_at": now + timedelta(seconds=ttl_s),
                "next_poll_at": now + timedelta(seconds=next_poll_in_s),
            },
        )
        return sorted(int(row[0]) for row in result)


async def insert_subscription(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    event_types: Sequence[str],
    *,
    enabled: bool = True,
    deleted: bool = False,
) -> int:
    async with transaction(sessions) as session:
        result = await session.execute(
            text(
                """
                INSERT INTO subscriptions (public_id, client_id, url, event_types, enabled,
                                           secret_encrypted, deleted_at)
                VALUES (:public_id, :client_id, 'https://example.com/hook',
                        CAST(:types AS varchar(32)[]), :enabled, '\\x00',
                        CASE WHEN :deleted THEN now() END)
                RETURNING id
                """
            ),
            {
                "public_id": f"sub_{secrets.token_hex(16)}",
                "client_id": client_id,
                "types": list(event_types),
                "enabled": enabled,
                "deleted": deleted,
            },
        )
        return int(result.scalar_one())


async def tasks_of(
    sessions: async_sessionmaker[AsyncSession], client_id: int
) -> dict[str, dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(
            text("SELECT * FROM tasks WHERE client_id = :c ORDER BY id"), {"c": client_id}
        )
        return {row.task_id: dict(row._mapping) for row in result}


async def events_of(
    sessions: async_sessionmaker[AsyncSession], client_id: int
) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(
            text("SELECT * FROM events WHERE client_id = :c ORDER BY id"), {"c": client_id}
        )
        return [dict(row._mapping) for row in result]


async def wait_until(
    condition: Callable[[], Any], *, timeout_s: float = 15.0, interval_s: float = 0.05
) -> Any:
    """Poll an (async) condition until it is truthy; its value, or AssertionError on timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)


@dataclass
class RunningEngine:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis[Any]
    limiter: UpstreamRateLimiter


@asynccontextmanager
async def running_engine(
    settings: Settings, *, concurrency: int = 4
) -> AsyncIterator[RunningEngine]:
    """A Celery worker (threads pool) and the scheduler loop, both on `settings`."""
    queue = f"phonebridge-test-{secrets.token_hex(4)}"
    app = create_celery_app(settings, queue=queue)
    db = create_engine_for(settings.sqlalchemy_url, pool_size=2)
    redis_client: Redis[Any] = Redis.from_url(settings.require_redis_url())
    limiter = UpstreamRateLimiter(redis_client, settings.upstream_max_rps)
    context = SchedulerContext(
        settings=settings,
        sessions=session_factory(db),
        redis=redis_client,
        limiter=limiter,
        publish_poll=celery_poll_publisher(app),
    )
    scheduler = Scheduler(default_steps(context), tick_s=settings.scheduler_tick_s, clock=utc_now)
    stop = asyncio.Event()
    # Every log call really formats its record: a bad `extra` must fail the test, not production.
    service_logger = logging.getLogger("service")
    level = service_logger.level
    service_logger.setLevel(logging.DEBUG)
    runtime_of(app).start()
    with start_worker(
        app,
        pool="threads",
        concurrency=concurrency,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=10,
    ):
        loop_task = asyncio.create_task(scheduler.run_until(stop))
        try:
            yield RunningEngine(settings, context.sessions, redis_client, limiter)
        finally:
            stop.set()
            await loop_task
    runtime_of(app).stop()
    service_logger.setLevel(level)
    await redis_client.aclose()
    await db.dispose()


class Processes:
    """Engine processes of one test; every one is stopped at the end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *command: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{command[0]}-{len(self.started)}.log").open("wb")
        process = subprocess.Popen(
            [phonebridge_executable(), *command], env=self.env, stdout=log, stderr=log
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def process_env(
    database_url: str, redis_url: str, base_url: str, **overrides: str
) -> dict[str, str]:
    """The environment of `phonebridge scheduler` / `worker` processes, with compressed times."""
    env = {
        **os.environ,
        "PHONEBRIDGE_DATABASE_URL": database_url,
        "PHONEBRIDGE_REDIS_URL": redis_url,
        "PHONEBRIDGE_UPSTREAM_BASE_URL": base_url,
        "PHONEBRIDGE_UPSTREAM_API_ID": API_ID,
        "PHONEBRIDGE_UPSTREAM_API_SECRET": API_SECRET,
        "PHONEBRIDGE_UPSTREAM_MAX_RPS": "150",
        "PHONEBRIDGE_UPSTREAM_TIMEOUT_S": "1",
        "PHONEBRIDGE_LEASE_S": "4",
        "PHONEBRIDGE_SCHEDULER_TICK_S": "0.05",
        "PHONEBRIDGE_POLL_BATCH_SIZE": "60",
        "PHONEBRIDGE_POLL_INITIAL_S": "0.2",
        "PHONEBRIDGE_POLL_MAX_S": "0.4",
        "PHONEBRIDGE_LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


@pytest.fixture
def processes(
    database_url: str, redis_url: str, fresh_sim: SimServer, tmp_path: Path
) -> Iterator[Processes]:
    running = Processes(process_env(database_url, redis_url, fresh_sim.base_url), tmp_path)
    yield running
    running.stop_all()
