"""Lease heartbeats against the real database: a worker renews the leases of the rows it holds
in one statement per table, and nothing else: not rows it wrote back, not rows re-claimed under
another token, not rows of batches it no longer holds."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.heartbeat import LeaseKeeper
from service.store.db import transaction
from service.store.leased_tasks import release_leases
from service.store.leases import LeasedTable
from service.store.poll_claims import claim_due_tasks
from tests.support.factories import insert_client, insert_tasks

pytestmark = pytest.mark.usefixtures("no_foreign_pending_tasks")

LEASE_S = 2.0


async def claim(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int
) -> tuple[uuid.UUID, list[int]]:
    async with transaction(sessions) as session:
        return await claim_due_tasks(session, now, LEASE_S, limit=limit)


async def leases_of(
    sessions: async_sessionmaker[AsyncSession], ids: list[int]
) -> dict[int, tuple[uuid.UUID | None, datetime | None]]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT id, lease_token, lease_until FROM tasks WHERE id = ANY(:ids)"),
            {"ids": ids},
        )
        return {row.id: (row.lease_token, row.lease_until) for row in rows}


def keeper(sessions: async_sessionmaker[AsyncSession]) -> LeaseKeeper:
    return LeaseKeeper(sessions, LEASE_S)


async def test_held_leases_are_renewed_and_others_left_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    await insert_tasks(sessions, client, [f"hb-{i}" for i in range(6)])
    now = utc_now()
    held_token, held_ids = await claim(sessions, now, 3)
    _other_token, other_ids = await claim(sessions, now, 3)
    assert len(held_ids) == len(other_ids) == 3
    leases = keeper(sessions)
    with leases.hold(LeasedTable.TASKS, held_token, held_ids, now) as held:
        # One of the held rows is handed back meanwhile: its lease is gone, and stays gone.
        async with transaction(sessions) as session:
            await release_leases(session, held_ids[:1], held_token, now)
        await asyncio.sleep(0.2)
        assert await leases.renew() == 1
        assert held.valid_until > now + timedelta(seconds=LEASE_S)
        assert held.renewals == 1
    after = await leases_of(sessions, held_ids + other_ids)
    assert after[held_ids[0]] == (None, None)
    for task_pk in held_ids[1:]:
        token, until = after[task_pk]
        assert token == held_token
        assert until is not None
        assert until >= held.valid_until - timedelta(milliseconds=1)
    for task_pk in other_ids:
        other_until = after[task_pk][1]
        assert other_until is not None
        assert other_until <= now + timedelta(seconds=LEASE_S, milliseconds=1)
    # No longer held: nothing renews it.
    assert await leases.renew() == 0


async def test_a_lease_taken_over_by_another_claim_is_not_renewed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    await insert_tasks(sessions, client, ["hb-lost"])
    start = utc_now()
    token, ids = await claim(sessions, start, 1)
    # The lease ran out and another scheduler claimed the row.
    later = start + timedelta(seconds=LEASE_S + 1)
    new_token, new_ids = await claim(sessions, later, 1)
    assert new_ids == ids
    leases = keeper(sessions)
    with leases.hold(LeasedTable.TASKS, token, ids, start) as held:
        assert await leases.renew() == 0
        assert held.valid_until == start
    assert (await leases_of(sessions, ids))[ids[0]] == (
        new_token,
        later + timedelta(seconds=LEASE_S),
    )


async def test_the_heartbeat_keeps_a_lease_alive_past_its_length(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await insert_client(sessions)
    await insert_tasks(sessions, client, ["hb-long"])
    token, ids = await claim(sessions, utc_now(), 1)
    leases = keeper(sessions)
    stop = asyncio.Event()
    beating = asyncio.create_task(leases.run_until(stop))
    with leases.hold(LeasedTable.TASKS, token, ids, utc_now()):
        await asyncio.sleep(LEASE_S * 2)
        # Nobody else can claim it: the lease is still running.
        assert (await claim(sessions, utc_now(), 10))[1] == []
    stop.set()
    await beating
    await asyncio.sleep(LEASE_S + 0.1)
    assert (await claim(sessions, utc_now(), 10))[1] == ids
