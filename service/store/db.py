"""Engines and sessions (a transaction, a single statement in autocommit, a scheduler step's
advisory turn), and the API's asyncpg pool for single registrations. Services never commit; the
request or task boundary does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import psycopg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.domain.jsontext import parse_json


def create_engine_for(sqlalchemy_url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        # A dead database must surface as an error quickly, not as a hung request.
        pool_timeout=10,
        connect_args={
            "connect_timeout": 5,
            "application_name": "phonebridge",
            # Timestamps leave the database in UTC whatever the server's own setting.
            "options": "-c timezone=UTC",
        },
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block ends normally, rolls back otherwise."""
    async with sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def one_statement(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A unit of work that is a single statement, atomic by itself: run in autocommit, it costs
    one round trip to the database instead of three (no BEGIN, no COMMIT). Each statement in the
    block commits on its own, so only one belongs in it."""
    async with sessions() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


_TRY_TURN = text("SELECT pg_try_advisory_xact_lock(:lock_id)")


async def take_turn(session: AsyncSession, lock_id: int) -> bool:
    """Whether this transaction is the one doing the work `lock_id` guards (a transaction-level
    advisory lock, taken without waiting): one scheduler at a time; the turn ends with the
    transaction."""
    return bool((await session.execute(_TRY_TURN, {"lock_id": lock_id})).scalar_one())


# asyncpg's classes are generic in asyncpg-stubs only, not at run time.
if TYPE_CHECKING:
    IntakePool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    # An asyncpg connection, as the intake pool lends it or on its own (service/store/tasks.py).
    IntakeConnection: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    )
else:
    IntakePool = asyncpg.Pool
    IntakeConnection = asyncpg.Connection | PoolConnectionProxy


def intake_pool(
    libpq_url: str,
    *,
    max_size: int,
    connect_timeout_s: float,
    application_name: str,
    **options: Any,
) -> IntakePool:
    """The API's asyncpg pool for the single-task registration (service/store/tasks.py), not yet
    initialised (`await pool`). `options` go to asyncpg.create_pool (a test's recording
    `connection_class`).

    No connection is opened until a request needs one (min_size 0), so the API starts while the
    database is down, and an idle one is closed after asyncpg's 5 minutes. An idle connection the
    server closed is noticed by the event loop (its socket reads EOF) and replaced on the next
    acquire, so a database restart costs no request. A connection goes back to the pool without
    asyncpg's reset query (an extra round trip per request: the registration is one autocommit
    statement that leaves no session state); asyncpg still rolls back a transaction left open."""
    return asyncpg.create_pool(
        libpq_url,
        min_size=0,
        max_size=max_size,
        timeout=connect_timeout_s,
        reset=_leave_as_is,
        init=_json_text,
        server_settings={"application_name": application_name, "timezone": "UTC"},
        **options,
    )


async def _leave_as_is(conn: asyncpg.Connection[Any]) -> None:
    """The pool's reset: nothing (see intake_pool)."""


async def _json_text(conn: asyncpg.Connection[Any]) -> None:
    """jsonb goes in as its text (the domain renders it) and comes out through the domain's
    parse_json, as on the psycopg connections (service/api/resources.py)."""
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name, encoder=_as_is, decoder=parse_json, schema="pg_catalog", format="text"
        )


def _as_is(text: str) -> str:
    return text


async def driver_connection(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under the session, in the session's own transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    return driver
