"""The claim of due tasks (service/store/poll_claims.py) against the real database: a lease
taken once, retaken when it ends, the limit, locked rows skipped, never a task that is not pending
or past its deadline. How a saturated round is shared is in test_poll_claims_fairness.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.store.db import transaction
from service.store.poll_claims import claim_due_tasks
from tests.support.claims import claim_all
from tests.support.factories import insert_client, insert_tasks
from tests.support.rows import tasks_of


async def test_claim_takes_due_tasks_once_with_a_lease(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    due = await insert_tasks(sessions, client, ["a", "b"], now=now)
    await insert_tasks(sessions, client, ["later"], now=now, next_poll_in_s=60)
    token, ids = await claim_all(sessions, now)
    assert set(due) <= set(ids)
    _, again = await claim_all(sessions, now)
    assert not set(due) & set(again), "a live lease excludes the task"
    rows = await tasks_of(sessions, client)
    assert rows["a"]["lease_token"] == token
    assert rows["later"]["lease_token"] is None


async def test_claim_retakes_a_task_whose_lease_ended(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["crashed"], now=now, ttl_s=3600)
    first, _ = await claim_all(sessions, now)
    second, ids = await claim_all(sessions, now + timedelta(seconds=31))
    assert task in ids
    assert first != second


async def test_claim_respects_the_limit_and_skips_locked_rows(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now() - timedelta(days=365)  # older than anything other tests left due
    ids = await insert_tasks(sessions, client, [f"t{i}" for i in range(6)], now=now, ttl_s=10**9)
    async with transaction(sessions) as one, transaction(sessions) as two:
        _, first = await claim_due_tasks(one, now, 30, limit=3)
        _, second = await claim_due_tasks(two, now, 30, limit=3)
    assert len(first) == 3
    assert len(second) == 3
    assert set(first) | set(second) == set(ids)


async def test_claim_never_takes_cancelled_or_expired_tasks(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [cancelled] = await insert_tasks(sessions, client, ["cancelled"], now=now)
    [past_deadline] = await insert_tasks(
        sessions, client, ["past"], now=now - timedelta(seconds=60), ttl_s=30
    )
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET state = 'cancelled' WHERE id = :id"), {"id": cancelled}
        )
    _, ids = await claim_all(sessions, now)
    assert cancelled not in ids
    assert past_deadline not in ids


@pytest.mark.parametrize("state", ["completed", "failed", "expired", "cancelled"])
async def test_final_tasks_are_never_claimed(
    sessions: async_sessionmaker[AsyncSession], state: str
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, [f"final-{state}"], now=now)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET state = :s WHERE id = :id"), {"s": state, "id": task}
        )
    _, ids = await claim_all(sessions, now)
    assert task not in ids
