"""The claim under saturation, on the real database: every client with due work gets its turn,
a client's likeliest answers go first, no task is claimed twice, none past its deadline."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.store.db import transaction
from service.store.polling import claim_due_tasks
from tests.support.factories import insert_client, insert_tasks

pytestmark = pytest.mark.usefixtures("no_foreign_pending_tasks")


def long_ago() -> datetime:
    # Due a year ago: nothing another test left due competes for the claim.
    return utc_now() - timedelta(days=365)


async def claim(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int
) -> tuple[uuid.UUID, list[int]]:
    async with transaction(sessions) as session:
        return await claim_due_tasks(session, now, lease_s=30, limit=limit)


async def backlog(
    sessions: async_sessionmaker[AsyncSession], size: int, now: datetime, *, ttl_s: float = 10**9
) -> tuple[int, list[int]]:
    client = await insert_client(sessions)
    ids = await insert_tasks(sessions, client, [f"t{i}" for i in range(size)], now=now, ttl_s=ttl_s)
    return client, ids


async def test_a_small_client_is_not_starved_by_a_big_backlog_due_earlier(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    _, big = await backlog(sessions, 500, now - timedelta(seconds=60))
    _, small = await backlog(sessions, 5, now)
    _, claimed = await claim(sessions, now, limit=20)
    assert set(small) <= set(claimed), "the small client's tasks all get a turn this round"
    assert len(set(claimed) & set(big)) == 15, "the rest of the round goes to the big client"


async def test_clients_with_due_work_share_a_round_equally(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    clients = [await backlog(sessions, 50, now - timedelta(seconds=i)) for i in range(3)]
    _, claimed = await claim(sessions, now, limit=30)
    assert [len(set(claimed) & set(ids)) for _, ids in clients] == [10, 10, 10]


async def test_within_a_client_the_likeliest_answers_go_first_and_first_polls_before_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    _client, ids = await backlog(sessions, 6, now)
    chances = [0.1, 0.9, None, 0.5, 0.7, 0.3]
    async with transaction(sessions) as session:
        for task_pk, chance in zip(ids, chances, strict=True):
            await session.execute(
                text("UPDATE tasks SET finish_p = :p WHERE id = :id"), {"p": chance, "id": task_pk}
            )
    _, claimed = await claim(sessions, now, limit=3)
    # Never polled (no estimate of it yet) first, then 0.9 and 0.7.
    assert set(claimed) == {ids[2], ids[1], ids[4]}


async def test_no_task_is_claimed_twice_by_concurrent_claimers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    clients = [await backlog(sessions, 40, now) for _ in range(4)]
    every = {task for _, ids in clients for task in ids}

    async def round_of(limit: int) -> list[int]:
        return (await claim(sessions, now, limit))[1]

    rounds = await asyncio.gather(*(round_of(25) for _ in range(8)))
    claimed = [task for ids in rounds for task in ids]
    assert len(claimed) == len(set(claimed)), "a task went to two claimers"
    assert set(claimed) <= every
    # Within their leases nothing is claimed again, and the rest of the backlog still is.
    _, rest = await claim(sessions, now, limit=1000)
    assert not set(rest) & set(claimed)
    assert set(rest) | set(claimed) == every


async def test_a_task_past_its_deadline_is_never_claimed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = long_ago()
    _, expired = await backlog(sessions, 3, now - timedelta(seconds=10), ttl_s=5)
    _, live = await backlog(sessions, 3, now)
    _, claimed = await claim(sessions, now, limit=100)
    assert not set(claimed) & set(expired)
    assert set(live) <= set(claimed)
