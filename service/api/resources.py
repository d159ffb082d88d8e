"""What the API process holds for its lifetime: settings, the database engine and pools, Redis,
the cache of recently seen API keys, the webhook secrets' cipher and the resolver that vets webhook
hosts. Built by the app's lifespan, read by the dependencies."""

from __future__ import annotations

import gc
import logging
import select
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import asyncpg
import psycopg
from asyncpg.pool import PoolConnectionProxy
from fastapi import FastAPI, Request
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.api.client_limits import ClientLimiter
from service.api.errors import IntakeUnavailable
from service.api.keycache import KeyCache
from service.api.keyusage import KeyUsage
from service.api.portal.session_key import portal_session_key, portal_session_keys
from service.api.signins import SignInThrottle
from service.checks.callback_hints import CallbackUrls, HintService
from service.checks.submit import SubmitService
from service.clock import Clock, utc_now
from service.config import Settings
from service.domain.jsontext import parse_json
from service.features.check_job_creation import JobSecrets
from service.logs import OncePerInterval
from service.store.db import (
    IntakeConnection,
    IntakePool,
    create_engine_for,
    intake_pool,
    session_factory,
)
from service.upstream.reaction import UpstreamReaction
from service.webhooks.encryption import SecretCipher, cipher_for
from service.webhooks.guard import HostResolver, SystemResolver

log = logging.getLogger(__name__)

# The hot path's pool: one API process serves many concurrent requests, each holding a connection
# for one statement. It grows to this size under load and shrinks back when idle.
HOT_POOL_MIN = 4
HOT_POOL_MAX = 32
# Waiting longer than this for a connection means the database is down or overloaded: answer 503.
HOT_POOL_WAIT_S = 2.0
# How long the pool keeps retrying one lost connection (with backoff 1 s, 2 s, ...) before it
# gives it up; a waiting request then asks for a fresh one. psycopg_pool's default, 5 minutes,
# lets the backoff grow so long that after a database restart the API kept answering 503 for
# seconds after PostgreSQL was back (seen in tests/chaos).
HOT_POOL_RECONNECT_S = 2.0
DATABASE_CONNECT_TIMEOUT_S = 5
# The start-up check that tells an operator the database is not there yet.
DATABASE_PROBE_TIMEOUT_S = 2
POOL_WARNING_INTERVAL_S = 60.0
# SQLAlchemy serves the less frequent routes (units of work, events, subscriptions).
ENGINE_POOL_SIZE = 10
# Redis answers in well under a millisecond; a second without an answer means it is down.
REDIS_TIMEOUT_S = 1.0
# Allocations (minus deallocations) between two young-generation garbage collections; Python's
# default is 700. See settle_garbage_collector.
GC_YOUNG_THRESHOLD = 10_000


HotPool = AsyncConnectionPool[AsyncConnection[DictRow]]


@dataclass(frozen=True)
class ApiResources:
    settings: Settings
    # Autocommit psycopg connections for the single-statement hot path (tasks, key lookups).
    pool: HotPool
    # asyncpg connections for the most frequent statement, the single-task registration.
    intake: IntakePool
    engine: AsyncEngine
    # The same pool, with each statement committing on its own: the routes whose work is a single
    # statement save the BEGIN and COMMIT round trips.
    autocommit_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis[Any]
    keys: KeyCache
    # When keys were last used (written at most once a minute each) and the per-client limits.
    key_usage: KeyUsage
    limits: ClientLimiter
    sign_ins: SignInThrottle
    # Vets the hosts of webhook URLs: the system's DNS, or what create_app was given (tests).
    resolver: HostResolver
    clock: Clock = utc_now

    @cached_property
    def callbacks(self) -> CallbackUrls:
        return CallbackUrls(self.settings, lambda: hot_connection(self), clock=self.clock)

    @cached_property
    def checks(self) -> SubmitService:
        """Submits checks upstream; its upstream client is made on the first submit."""
        reaction = UpstreamReaction.from_settings(self.redis, self.settings)
        return SubmitService(
            self.settings, self.sessions, self.redis, self.callbacks, reaction, clock=self.clock
        )

    @cached_property
    def hints(self) -> HintService:
        return HintService(self.settings, lambda: hot_connection(self), clock=self.clock)

    @cached_property
    def job_secrets(self) -> JobSecrets:
        """The check jobs' number digest key and seal, built on first use (they may read the
        key file under data_dir)."""
        return JobSecrets.of(self.settings)

    @cached_property
    def cipher(self) -> SecretCipher:
        """The webhook secrets' cipher, built on first use: it may read or create the key file
        under data_dir, which an API that never touches a subscription should not need."""
        return cipher_for(self.settings)

    @cached_property
    def portal_key(self) -> bytes:
        """The key that seals portal sessions (service/api/portal/session_key.py), built on first
        use for the same reason as the cipher."""
        return portal_session_key(self.settings)

    @cached_property
    def portal_keys(self) -> tuple[bytes, ...]:
        """`portal_key` and the same key under each previous secret of a rotation: sessions and
        forms made under any of them are still accepted."""
        return portal_session_keys(self.settings)


class HotConnection:
    """A connection of the hot pool that the server has not already closed, as an async context
    manager: `async with hot_connection(resources) as conn:`.

    After PostgreSQL restarts, every idle connection in the pool is dead, but nothing notices
    until a statement fails on it: without this, each of them would cost one client a 503 long
    after the database is back. Checking with a query (psycopg_pool's `check_connection`) would
    add a round trip to every request; instead an idle connection whose socket is readable is
    taken as closed (the server only speaks unasked to say goodbye: a shutdown notice, or EOF),
    closed here, and the pool replaces it while the next one is tried.

    The connection is taken with the pool's getconn and handed back with putconn, which rolls
    back or discards a connection left in a transaction or broken. psycopg_pool's `connection()`
    would also enter the connection's own context, whose exit commits: a no-op on these
    autocommit connections that still took the connection's lock and a wait on every request
    (with a generator-based context manager around each), about 10 us of CPU (issue 28)."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: HotPool) -> None:
        self._pool = pool
        self._conn: AsyncConnection[DictRow] | None = None

    async def __aenter__(self) -> AsyncConnection[DictRow]:
        for _ in range(HOT_POOL_MAX + 1):
            conn = await self._pool.getconn()
            if not closed_by_server(conn):
                self._conn = conn
                return conn
            await conn.close()
            await self._pool.putconn(conn)  # closed: the pool discards it and opens another
        raise psycopg.OperationalError("every pooled connection was closed by the server")

    async def __aexit__(self, *_: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.putconn(conn)


class IntakeConnectionOf:
    """A connection of the intake pool (asyncpg), as an async context manager: `async with
    intake_connection(resources) as conn:`. A wait past HOT_POOL_WAIT_S, or a connection that
    cannot be opened, raises IntakeUnavailable."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: IntakePool) -> None:
        self._pool = pool
        self._conn: PoolConnectionProxy[asyncpg.Record] | None = None

    async def __aenter__(self) -> IntakeConnection:
        # A connection idle: no timeout to arm and cancel (~2% of a registration's CPU); one
        # still to open has its own connect timeout.
        wait_s = None if self._pool.get_idle_size() else HOT_POOL_WAIT_S
        try:
            conn = await self._pool.acquire(timeout=wait_s)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # Refused or unreachable, no connection in time, or the session refused (starting
            # up, too many connections): an acquire runs no statement of ours.
            raise IntakeUnavailable(type(error).__name__) from error
        self._conn = conn
        return conn

    async def __aexit__(self, *_: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)


def intake_connection(resources: ApiResources) -> IntakeConnectionOf:
    return IntakeConnectionOf(resources.intake)  # see IntakeConnectionOf


T = TypeVar("T")
INTAKE_ATTEMPTS = 3
_LOST = (asyncpg.ConnectionDoesNotExistError, asyncpg.InternalClientError)


async def on_intake_connection(
    resources: ApiResources, work: Callable[[IntakeConnection], Awaitable[T]]
) -> T:
    """`work` on an intake connection; again on another, the first closed, when the server had
    closed it unseen: asyncpg can lend one before reading the server's goodbye (CI saw
    InternalClientError, "another operation is in progress"; the psycopg pool looks at its socket
    first, closed_by_server). The intake's work is idempotent: a retry after a committed insert
    reads the row as already registered. INTAKE_ATTEMPTS at most."""
    for attempt in range(1, INTAKE_ATTEMPTS + 1):
        async with intake_connection(resources) as conn:
            try:
                return await work(conn)
            except _LOST:
                if attempt == INTAKE_ATTEMPTS:
                    raise
                conn.terminate()
    raise AssertionError("unreachable: the last attempt returns or raises")


def hot_connection(resources: ApiResources) -> HotConnection:
    """A live connection of the hot pool (see HotConnection)."""
    return HotConnection(resources.pool)


def closed_by_server(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle connection has something to read: the server has closed it.

    poll(), not select(): a busy API process can hold more than select's 1024 descriptors."""
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


async def get_resources(request: Request) -> ApiResources:
    """The process's resources (async, so FastAPI calls it inline rather than in a thread)."""
    return resources_of(request)


def resources_of(request: Request) -> ApiResources:
    resources = getattr(request.app.state, "resources", None)
    if not isinstance(resources, ApiResources):
        raise RuntimeError("the API's resources are not set up: is the lifespan running?")
    return resources


@asynccontextmanager
async def api_lifespan(app: FastAPI, resolver: HostResolver | None = None) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=ENGINE_POOL_SIZE)
    pool = hot_pool(settings)
    pool_warnings = quiet_pool_reconnect_warnings()
    if not await database_answers(settings.sqlalchemy_url):
        log.warning(
            "api.database_unavailable_at_start",
            extra={"detail": "serving; answering 503 until the database answers"},
        )
        pool_warnings.hold()
    # Without waiting: the API starts (and /readyz says why) while the database is down.
    await pool.open(wait=False)
    intake = await new_intake_pool(settings)
    redis: Redis[Any] = Redis.from_url(
        settings.require_redis_url(),
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
    )
    app.state.resources = ApiResources(
        settings=settings,
        pool=pool,
        intake=intake,
        engine=engine,
        autocommit_engine=engine.execution_options(isolation_level="AUTOCOMMIT"),
        sessions=session_factory(engine),
        redis=redis,
        keys=KeyCache(),
        key_usage=KeyUsage(),
        limits=ClientLimiter(redis),
        sign_ins=SignInThrottle(redis, settings.sign_in_failures_per_minute),
        resolver=resolver if resolver is not None else SystemResolver(),
    )
    settle_garbage_collector()
    try:
        yield
    finally:
        await app.state.resources.key_usage.drain()
        if "checks" in app.state.resources.__dict__:
            await app.state.resources.checks.close()
        await redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
        await pool.close()
        await intake.close()
        await engine.dispose()


def hot_pool(settings: Settings, **connect_options: Any) -> HotPool:
    """The hot path's pool, not yet open. `connect_options` are added to each connection's
    (a test's `cursor_factory` that records what is sent)."""
    return AsyncConnectionPool(
        libpq_url(settings.sqlalchemy_url),
        connection_class=AsyncConnection[DictRow],
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": DATABASE_CONNECT_TIMEOUT_S,
            "application_name": "phonebridge-api",
            # Timestamps come back in the session's zone; the contract's are UTC.
            "options": "-c timezone=UTC",
            **connect_options,
        },
        min_size=HOT_POOL_MIN,
        max_size=HOT_POOL_MAX,
        timeout=HOT_POOL_WAIT_S,
        reconnect_timeout=HOT_POOL_RECONNECT_S,
        configure=_configure_connection,
        open=False,
    )


async def new_intake_pool(settings: Settings, **options: Any) -> IntakePool:
    """The intake pool (service/store/db.py), initialised: it opens no connection before a
    request needs one. `options` go to asyncpg (a test's recording `connection_class`)."""
    pool = intake_pool(
        libpq_url(settings.sqlalchemy_url),
        max_size=HOT_POOL_MAX,
        connect_timeout_s=DATABASE_CONNECT_TIMEOUT_S,
        application_name="phonebridge-api",
        **options,
    )
    await pool
    return pool


async def database_answers(sqlalchemy_url: str) -> bool:
    try:
        conn = await AsyncConnection.connect(
            libpq_url(sqlalchemy_url), connect_timeout=DATABASE_PROBE_TIMEOUT_S
        )
    except psycopg.Error:
        return False
    await conn.close()
    return True


def quiet_pool_reconnect_warnings() -> OncePerInterval:
    """psycopg_pool logs a warning for every failed connection attempt of every pool slot: with
    the database down, 16 lines in the API's first 2 seconds. One a minute says as much."""
    pool_log = logging.getLogger("psycopg.pool")
    for existing in [f for f in pool_log.filters if isinstance(f, OncePerInterval)]:
        pool_log.removeFilter(existing)
    throttle = OncePerInterval(POOL_WARNING_INTERVAL_S)
    pool_log.addFilter(throttle)
    return throttle


def settle_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the request path's back.

    Measured on the single-task POST: with Python's defaults the collector took about a fifth of
    the API's CPU, most of it in full collections walking the ~140,000 objects that live as long
    as the process (modules, routes, pydantic schemas). Freezing them once everything is loaded
    leaves them out of every later collection. A request's own garbage is almost all freed by
    reference counting, so young collections can also run far less often than every 700
    allocations without memory growing.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def _configure_connection(conn: AsyncConnection[DictRow]) -> None:
    # JSONB through orjson (several times faster than json), integers beyond 64 bits kept whole.
    set_json_loads(parse_json, conn)


def libpq_url(sqlalchemy_url: str) -> str:
    """`postgresql+psycopg://...` -> `postgresql://...`, the form libpq reads."""
    scheme, rest = sqlalchemy_url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"
