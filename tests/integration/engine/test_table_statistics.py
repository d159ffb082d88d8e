"""The scheduler's statistics step (service/engine/table_statistics.py) against the machine's real
PostgreSQL, whose autovacuum is off (as this step exists for): a busy table changed far past its
statistics is analyzed, a table near them is not, and only one scheduler analyzes at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.table_statistics import ANALYZE_CHANGED_SHARE, ANALYZE_MIN_CHANGES
from service.engine.table_statistics import TableStatisticsRefresh
from service.store.db import transaction
from service.store.table_statistics import (
    BUSIEST_TABLES,
    STATISTICS_LOCK_ID,
    TableChanges,
    analyze,
    changes_since_analyze,
)
from tests.support.factories import insert_client
from tests.support.waiting import wait_until_async

PREFIX = "stats-step-"


async def analyzed_at(sessions: async_sessionmaker[AsyncSession]) -> dict[str, datetime | None]:
    async with transaction(sessions) as session:
        rows = await session.execute(
            text(
                "SELECT relname, last_analyze FROM pg_stat_user_tables "
                "WHERE relname = ANY(CAST(:tables AS text[]))"
            ),
            {"tables": list(BUSIEST_TABLES)},
        )
        return {str(name): at for name, at in rows}


async def planned_tasks(sessions: async_sessionmaker[AsyncSession]) -> float:
    """The planner's estimate of the rows in `tasks` (pg_class.reltuples, which ANALYZE sets)."""
    async with transaction(sessions) as session:
        result = await session.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = 'tasks'")
        )
        return float(result.scalar_one())


async def tasks_statistics(sessions: async_sessionmaker[AsyncSession]) -> TableChanges:
    """`tasks` as the step reads it: its live rows and its rows changed since its last ANALYZE."""
    async with transaction(sessions) as session:
        [tasks] = [t for t in await changes_since_analyze(session) if t.table == "tasks"]
    return tasks


@pytest.fixture
async def tasks_far_past_their_statistics(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[int]:
    """Every busy table analyzed, then `tasks` given more new rows than twice autovacuum's
    threshold allows (reported to the statistics at once); removed after the test."""
    async with transaction(sessions) as session:
        for table in BUSIEST_TABLES:
            await analyze(session, table)
    live = (await tasks_statistics(sessions)).rows
    added = int(ANALYZE_MIN_CHANGES + 2 * ANALYZE_CHANGED_SHARE * (live + ANALYZE_MIN_CHANGES))
    client = await insert_client(sessions)
    async with engine.connect() as conn:
        await conn.execute(
            text(
                "INSERT INTO tasks (client_id, task_id, state, submitted_at, expires_at) "
                "SELECT :c, :p || g, 'pending', now(), now() + interval '1 day' "
                "FROM generate_series(1, CAST(:n AS integer)) AS g"
            ),
            {"c": client, "p": PREFIX, "n": added},
        )
        await conn.commit()
        # This backend's counts reach pg_stat_user_tables as its next transaction ends.
        await conn.execute(text("SELECT pg_stat_force_next_flush()"))
        await conn.commit()
    await wait_until_async(
        lambda: _at_least(sessions, added), timeout_s=10, what="the inserts in the statistics"
    )
    yield added
    async with transaction(sessions) as session:
        await session.execute(text("DELETE FROM tasks WHERE task_id LIKE :p"), {"p": PREFIX + "%"})


async def _at_least(sessions: async_sessionmaker[AsyncSession], added: int) -> bool:
    return (await tasks_statistics(sessions)).changed >= added


async def test_a_table_far_past_its_statistics_is_analyzed_and_the_others_are_not(
    sessions: async_sessionmaker[AsyncSession], tasks_far_past_their_statistics: int
) -> None:
    before = await analyzed_at(sessions)
    estimated_before = await planned_tasks(sessions)
    await TableStatisticsRefresh(sessions).run(utc_now())
    after = await analyzed_at(sessions)
    assert after["tasks"] is not None
    assert before["tasks"] is None or after["tasks"] > before["tasks"]
    assert {t: at for t, at in after.items() if t != "tasks"} == {
        t: at for t, at in before.items() if t != "tasks"
    }
    # The planner's row count now includes what was added.
    assert await planned_tasks(sessions) >= estimated_before + tasks_far_past_their_statistics * 0.9


async def test_only_one_scheduler_analyzes_at_a_time(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    tasks_far_past_their_statistics: int,
) -> None:
    before = await analyzed_at(sessions)
    async with engine.connect() as other:
        await other.execute(text("SELECT pg_advisory_xact_lock(:l)"), {"l": STATISTICS_LOCK_ID})
        await TableStatisticsRefresh(sessions).run(utc_now())
        await other.rollback()
    assert await analyzed_at(sessions) == before
    await TableStatisticsRefresh(sessions).run(utc_now())
    assert (await analyzed_at(sessions))["tasks"] != before["tasks"]
