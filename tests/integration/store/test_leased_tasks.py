"""The leased tasks read as the poll needs them and released unpolled
(service/store/leased_tasks.py), against the real database."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.store.db import transaction
from service.store.leased_tasks import load_leased_tasks, release_leases
from tests.support.claims import claim_all
from tests.support.factories import insert_client, insert_tasks
from tests.support.rows import tasks_of


async def test_a_leased_task_carries_its_clients_own_lag_target(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """`phonebridge api-key limits --poll-target-p95-s` reaches the schedule through the leased
    task (None: the setting's)."""
    targeted, plain = await insert_client(sessions), await insert_client(sessions)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE clients SET poll_target_p95_s = 12.5 WHERE id = :id"), {"id": targeted}
        )
    now = utc_now()
    [mine] = await insert_tasks(sessions, targeted, ["targeted"], now=now)
    [theirs] = await insert_tasks(sessions, plain, ["plain"], now=now)
    token, _ = await claim_all(sessions, now)
    async with transaction(sessions) as session:
        leased = {t.id: t for t in await load_leased_tasks(session, [mine, theirs], token, now)}
    assert leased[mine].poll_target_p95_s == 12.5
    assert leased[theirs].poll_target_p95_s is None


async def test_release_hands_back_unpolled_tasks_without_counting_a_poll(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    now = utc_now()
    [task] = await insert_tasks(sessions, client, ["held"], now=now, ttl_s=10)
    token, _ = await claim_all(sessions, now)
    async with transaction(sessions) as session:
        released = await release_leases(
            session, [task], token, now, not_before=now + timedelta(seconds=60)
        )
    assert released == 1
    row = (await tasks_of(sessions, client))["held"]
    assert row["lease_token"] is None
    assert row["poll_count"] == 0
    assert row["next_poll_at"] == row["expires_at"], "never past the deadline"
