"""The composition root of the worker and scheduler processes: the one place where polling
(service/engine) and webhook delivery (service/webhooks) are put together, so neither package
imports the other.

The worker: one long-lived asyncio loop per process, in a background thread.

Celery tasks are synchronous; the engine is async (psycopg async, redis.asyncio, httpx). Starting a
loop per task would rebuild the DB pool, the Redis client and the HTTP connections every time, so
the process keeps one loop with those bound to it, and tasks (from any pool thread) submit a
coroutine to it and wait for the result. Several batches are then in flight at once in one
process, sharing connections.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.rows import DictRow, dict_row
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.checks.callback_hints import CallbackUrls
from service.clock import utc_now
from service.config import Settings
from service.engine.job_items import CallbackUrlFor, no_callback
from service.engine.poller import PollService
from service.engine.scheduled_submits import ScheduledSubmitService
from service.engine.scheduler import (
    PeriodicStep,
    PollPublisher,
    Scheduler,
    SchedulerContext,
    SubmitPublisher,
    default_steps,
)
from service.heartbeat import LeaseKeeper
from service.store.db import create_engine_for, session_factory
from service.upstream.client import UpstreamClient
from service.upstream.ratelimit import UpstreamRateLimiter
from service.upstream.reaction import UpstreamReaction
from service.webhooks.batch_delivery import DeliveryService
from service.webhooks.dispatch import DeliveryDispatch, DeliveryPublisher

log = logging.getLogger(__name__)

T = TypeVar("T")

REDIS_MAX_CONNECTIONS = 32


@dataclass(frozen=True)
class WorkerResources:
    """Everything bound to the worker's loop; services that run in a worker take what they need
    from here."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis[Any]
    upstream: UpstreamClient
    limiter: UpstreamRateLimiter
    poller: PollService
    # Scheduled submits: the re-checks.
    submits: ScheduledSubmitService
    deliveries: DeliveryService
    leases: LeaseKeeper
    heartbeat: asyncio.Task[None]
    stop_heartbeat: asyncio.Event


async def open_resources(settings: Settings, *, db_pool_size: int = 10) -> WorkerResources:
    """Build the worker's resources on the running loop."""
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=db_pool_size)
    # Callers wait for a free connection rather than fail when many batches talk to Redis at once.
    redis: Redis[Any] = Redis(
        connection_pool=BlockingConnectionPool.from_url(
            settings.require_redis_url(), max_connections=REDIS_MAX_CONNECTIONS, timeout=10
        )
    )
    upstream = UpstreamClient(settings)
    reaction = UpstreamReaction.from_settings(redis, settings)
    sessions = session_factory(engine)
    leases = LeaseKeeper(sessions, settings.lease_s)
    deliveries = DeliveryService.from_settings(settings, sessions, leases, redis)
    poller = PollService(settings, sessions, upstream, reaction, leases, deliveries)
    submits = ScheduledSubmitService(
        settings,
        sessions,
        upstream,
        reaction,
        callback_url_for=callback_urls_for(settings),
        leases=leases,
    )
    stop_heartbeat = asyncio.Event()
    heartbeat = asyncio.create_task(leases.run_until(stop_heartbeat))
    return WorkerResources(
        settings,
        engine,
        sessions,
        redis,
        upstream,
        reaction.limiter,
        poller,
        submits,
        deliveries,
        leases,
        heartbeat,
        stop_heartbeat,
    )


def callback_urls_for(settings: Settings) -> CallbackUrlFor:
    """The clients' callback URLs for the checks the engine submits (check job items), as the
    API passes them with single checks; none without PHONEBRIDGE_PUBLIC_URL."""
    if settings.public_url is None:
        return no_callback
    url = settings.sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)

    @asynccontextmanager
    async def connection() -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)
        async with conn:
            yield conn

    return CallbackUrls(settings, connection).url_for


async def close_resources(resources: WorkerResources) -> None:
    resources.stop_heartbeat.set()
    await resources.heartbeat
    await resources.poller.close()
    await resources.submits.close()
    await resources.deliveries.close()
    await resources.upstream.aclose()
    await resources.redis.aclose()  # type: ignore[attr-defined]  # stubs predate aclose
    await resources.engine.dispose()


class WorkerRuntime:
    """The worker process's loop thread; started on first use, stopped at process shutdown."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._resources: WorkerResources | None = None

    def call(self, work: Callable[[WorkerResources], Awaitable[T]]) -> T:
        """Run `work(resources)` on the engine loop and wait for its result (from any thread)."""
        loop, resources = self._ensure_started()
        future: Future[T] = asyncio.run_coroutine_threadsafe(_await(work(resources)), loop)
        return future.result()

    def start(self) -> None:
        self._ensure_started()

    def stop(self) -> None:
        with self._lock:
            loop, thread, resources = self._loop, self._thread, self._resources
            self._loop = self._thread = self._resources = None
        if loop is None or thread is None:
            return
        if resources is not None:
            try:
                asyncio.run_coroutine_threadsafe(close_resources(resources), loop).result(10)
            except Exception:
                log.exception("engine.close_failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def _ensure_started(self) -> tuple[asyncio.AbstractEventLoop, WorkerResources]:
        with self._lock:
            if self._loop is None or self._resources is None:
                loop = _new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="phonebridge-engine", daemon=True
                )
                thread.start()
                resources = asyncio.run_coroutine_threadsafe(
                    open_resources(self._settings), loop
                ).result()
                self._loop, self._thread, self._resources = loop, thread, resources
            return self._loop, self._resources


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def scheduler_steps(
    context: SchedulerContext, publish_delivery: DeliveryPublisher | None
) -> list[PeriodicStep]:
    """The engine's steps and, given a way to send them, the webhook deliveries' claims."""
    steps = default_steps(context)
    if publish_delivery is not None:
        steps.append(DeliveryDispatch(context.settings, context.sessions, publish_delivery))
    return steps


async def run_scheduler_until(
    stop: asyncio.Event,
    settings: Settings,
    *,
    publish_poll: PollPublisher,
    publish_delivery: DeliveryPublisher,
    publish_submit: SubmitPublisher,
) -> None:
    """The scheduler's loop with its own database engine and Redis client, until `stop` is set.
    The process entry point (workers/scheduler.py) decides how batches reach the workers."""
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=2)
    redis: Redis[Any] = Redis.from_url(settings.require_redis_url())
    context = SchedulerContext(
        settings=settings,
        sessions=session_factory(engine),
        redis=redis,
        limiter=UpstreamRateLimiter(redis, settings.upstream_max_rps),
        publish_poll=publish_poll,
        publish_submit=publish_submit,
    )
    scheduler = Scheduler(
        scheduler_steps(context, publish_delivery), tick_s=settings.scheduler_tick_s, clock=utc_now
    )
    log.info("scheduler.started", extra={"tick_s": settings.scheduler_tick_s})
    try:
        await scheduler.run_until(stop)
    finally:
        await redis.aclose()  # type: ignore[attr-defined]  # stubs predate aclose
        await engine.dispose()
    log.info("scheduler.stopped")
