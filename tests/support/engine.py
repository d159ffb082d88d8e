"""The polling engine run by the tests: in this process (the scheduler loop in the test's event
loop and a real Celery worker on a threads pool, with its own engine loop), or as real
`phonebridge scheduler` / `worker` processes."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.contrib.testing.worker import start_worker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.engine.scheduler import Scheduler, SchedulerContext
from service.runtime import scheduler_steps
from service.sim.server import phonebridge_executable
from service.store.db import create_engine_for, session_factory
from service.upstream.ratelimit import UpstreamRateLimiter
from workers.app import (
    celery_delivery_publisher,
    celery_poll_publisher,
    celery_submit_publisher,
    create_celery_app,
    runtime_of,
)


@dataclass
class RunningEngine:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis[Any]
    limiter: UpstreamRateLimiter


@asynccontextmanager
async def running_engine(
    settings: Settings, *, concurrency: int = 4, deliver: bool = False
) -> AsyncIterator[RunningEngine]:
    """A Celery worker (threads pool) and the scheduler loop, both on `settings`; with `deliver`,
    the scheduler also dispatches webhook deliveries to that worker."""
    queue = f"phonebridge-test-{secrets.token_hex(4)}"
    app = create_celery_app(settings, queue=queue)
    # The worker's consumer notices it must stop when its BRPOP returns: after up to a second by
    # default, with nothing queued. A 50 ms BRPOP makes stopping an engine take ~0.05 s instead
    # of ~0.5-1 s, once per test that runs one; only this in-process worker polls faster.
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "polling_interval": 0.05,
    }
    db = create_engine_for(settings.sqlalchemy_url, pool_size=2)
    redis_client: Redis[Any] = Redis.from_url(settings.require_redis_url())
    limiter = UpstreamRateLimiter(redis_client, settings.upstream_max_rps)
    context = SchedulerContext(
        settings=settings,
        sessions=session_factory(db),
        redis=redis_client,
        limiter=limiter,
        publish_poll=celery_poll_publisher(app),
        publish_submit=celery_submit_publisher(app),
    )
    steps = scheduler_steps(context, celery_delivery_publisher(app) if deliver else None)
    scheduler = Scheduler(steps, tick_s=settings.scheduler_tick_s, clock=utc_now)
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
    await redis_client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
    await db.dispose()


class Processes:
    """Engine processes of one test; every one is stopped at the end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, *command: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{command[0]}-{len(self.started)}.log").open("wb")
        env = {**self.env, **(extra_env or {})}
        process = subprocess.Popen(
            [phonebridge_executable(), *command], env=env, stdout=log, stderr=log
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
