"""`one_statement` (service/store/db.py) on the real PostgreSQL: its statement commits by itself
(nothing to roll back when the block then fails), and the pooled connection it used is back to
transactions for the next unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.store.db import create_engine_for, one_statement, session_factory, transaction

Unit = Callable[[async_sessionmaker[AsyncSession]], AbstractAsyncContextManager[AsyncSession]]


class Failed(Exception):
    pass


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a single pooled connection, with a temporary table of its own (`notes`)."""
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("CREATE TEMPORARY TABLE notes (note text)"))
    yield sessions
    await engine.dispose()


async def notes(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with transaction(sessions) as session:
        return [str(n) for n in (await session.execute(text("SELECT note FROM notes"))).scalars()]


async def write_then_fail(
    unit: Unit, sessions: async_sessionmaker[AsyncSession], note: str
) -> None:
    """A unit of work that writes `note`, then fails."""
    async with unit(sessions) as session:
        await session.execute(text("INSERT INTO notes VALUES (:note)"), {"note": note})
        raise Failed


async def test_a_statement_commits_by_itself_and_the_connection_then_has_transactions_again(
    one_connection: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(Failed):
        await write_then_fail(one_statement, one_connection, "kept")
    with pytest.raises(Failed):
        await write_then_fail(transaction, one_connection, "rolled back")
    assert await notes(one_connection) == ["kept"]
