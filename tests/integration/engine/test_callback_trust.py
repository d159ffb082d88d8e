"""Callback trust in PostgreSQL and through the engine: completions of callback-carrying checks
count as heard or missed, too many misses put the client's checks back on the normal schedule
(and pull in the ones still waiting), and a callback just after the poll counts as heard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.callback_trust import CallbackRecord
from service.domain.states import TaskState
from service.sim.server import SimServer
from service.store.callback_trust import (
    CallbackCount,
    callback_record,
    count_callbacks,
    stop_waiting,
)
from service.store.db import transaction
from tests.support.api import api_client, bearer
from tests.support.checks import PUBLIC_URL, callback_token, hint, insert_submitted_task, submit
from tests.support.engine import running_engine
from tests.support.factories import insert_client, new_key
from tests.support.settings import engine_settings
from tests.support.waiting import wait_until_async

HALF_LIFE_S = 3600.0


async def waiting_check(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    task_id: str,
    now: datetime,
    *,
    callback: bool = True,
) -> None:
    """A pending submitted check, its safety-net poll a minute away (or, without a callback,
    its next poll)."""
    minute = timedelta(minutes=1)
    await insert_submitted_task(
        sessions,
        client_id,
        task_id,
        now,
        first_poll_in=minute,
        safety_net_in=minute if callback else None,
    )


async def next_poll_at(sessions: async_sessionmaker[AsyncSession], task_id: str) -> datetime:
    async with transaction(sessions) as session:
        row = await session.execute(
            text("SELECT next_poll_at FROM tasks WHERE task_id = :task_id"), {"task_id": task_id}
        )
        value: datetime = row.scalar_one()
        return value


async def count(
    sessions: async_sessionmaker[AsyncSession],
    counts: dict[int, CallbackCount],
    now: datetime,
    tolerance: float = 0.05,
) -> list[int]:
    async with transaction(sessions) as session:
        changes = await count_callbacks(
            session, counts, now, half_life_s=HALF_LIFE_S, tolerance=tolerance
        )
    return [change.client_id for change in changes]


async def record_of(sessions: async_sessionmaker[AsyncSession], client_id: int) -> CallbackRecord:
    async with transaction(sessions) as session:
        return await callback_record(session, client_id)


async def test_counts_decay_and_trust_flips_only_for_the_client_past_the_tolerance(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    lossy, healthy = await insert_client(sessions), await insert_client(sessions)
    now = datetime.now(UTC)

    assert (
        await count(sessions, {lossy: CallbackCount(heard=40), healthy: CallbackCount(40)}, now)
        == []
    )
    assert (await record_of(sessions, lossy)) == CallbackRecord(40, 0)
    changed = await count(
        sessions, {lossy: CallbackCount(missed=5), healthy: CallbackCount(1, 1)}, now
    )

    assert changed == [lossy]
    # 5 of 45 is past the tolerance. Five misses in a row, but all at once: not yet an outage
    # (a late callback could still come for the first).
    assert (await record_of(sessions, lossy)) == CallbackRecord(40, 5, lossy=True, streak=5)
    assert (await record_of(sessions, healthy)).trusted
    # An hour later the counts weigh half, and the next completion is added to that.
    await count(sessions, {lossy: CallbackCount(heard=1)}, now + timedelta(seconds=HALF_LIFE_S))
    later = await record_of(sessions, lossy)
    assert later.heard == pytest.approx(21.0)
    assert later.missed == pytest.approx(2.5)
    assert not later.trusted


async def test_an_outage_stops_trust_at_the_third_miss_in_a_row_and_ends_at_the_second_heard(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A busy client (a thousand recent callbacks heard) whose callbacks all stop: the loss share
    would take minutes of misses; three in a row, from separate write-backs, the first over a
    second old (no late callback seen), are enough. Two heard callbacks end it, and the misses of
    the outage leave the share as it was."""
    client = await insert_client(sessions)
    now = datetime.now(UTC)
    second = timedelta(seconds=1)
    await count(sessions, {client: CallbackCount(heard=1000)}, now)

    assert await count(sessions, {client: CallbackCount(missed=1)}, now) == []
    assert await count(sessions, {client: CallbackCount(missed=1)}, now) == []
    assert await count(sessions, {client: CallbackCount(missed=1)}, now + second / 2) == []
    assert await count(sessions, {client: CallbackCount(missed=1)}, now + second) == [client]
    stopped = await record_of(sessions, client)
    assert stopped.outage
    assert not stopped.lossy
    assert not stopped.trusted

    assert await count(sessions, {client: CallbackCount(missed=200)}, now) == []
    assert await count(sessions, {client: CallbackCount(heard=1, missed=5)}, now) == []
    assert await count(sessions, {client: CallbackCount(heard=1)}, now) == [client]
    healed = await record_of(sessions, client)
    assert healed.trusted
    assert healed.heard == pytest.approx(1002.0, rel=0.01)
    assert healed.missed == pytest.approx(4.0, rel=0.01)


async def test_losing_trust_makes_only_that_clients_checks_still_waiting_for_a_callback_due(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    lossy, other = await insert_client(sessions), await insert_client(sessions)
    now = datetime.now(UTC)
    submitted = now - timedelta(seconds=20)
    young = now - timedelta(seconds=1)
    await waiting_check(sessions, lossy, "trust-waiting", submitted)
    await waiting_check(sessions, lossy, "trust-young", young)
    await waiting_check(sessions, lossy, "trust-no-callback", submitted, callback=False)
    await waiting_check(sessions, other, "trust-other", submitted)
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE tasks SET last_hint_at = :now WHERE task_id = 'trust-no-callback'"),
            {"now": now},
        )

    assert await count(sessions, {lossy: CallbackCount(missed=3)}, now) == [lossy]
    async with transaction(sessions) as session:
        assert await stop_waiting(session, lossy, now, first_poll_s=2.0) == 2

    # Waiting for 20 s already: due now. One second old: due at a registered task's 2 s step.
    assert await next_poll_at(sessions, "trust-waiting") == now
    assert await next_poll_at(sessions, "trust-young") == young + timedelta(seconds=2)
    # Not waiting for a callback, or another client's: untouched.
    assert await next_poll_at(sessions, "trust-no-callback") == submitted + timedelta(minutes=1)
    assert await next_poll_at(sessions, "trust-other") == submitted + timedelta(minutes=1)


@pytest.mark.usefixtures("no_foreign_pending_tasks", "flush_redis")
async def test_missed_callbacks_stop_the_safety_net_and_a_late_one_counts_as_heard(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Through the API and a running engine: checks whose callbacks never come are found by the
    safety net and counted missed; after three, the client's next check is polled as a registered
    task would be. A callback arriving just after its poll found the answer counts as heard."""
    settings = engine_settings(
        database_url,
        redis_url,
        fresh_sim.base_url,
        public_url=PUBLIC_URL,
        hinted_poll_initial_s=1.0,
        poll_initial_s=1.0,
        poll_max_s=4.0,
        callback_loss_tolerance=0.05,
    )
    fresh_sim.control.configure(submit_script="ring-0-0.2s")
    fresh_sim.control.set_callbacks(lose=1.0)
    key = await new_key(settings)
    async with api_client(settings) as api, running_engine(settings):
        lost = [(await submit(api, key, idempotency_key=f"lost-{i}")).json() for i in range(3)]

        async def all_completed() -> bool:
            for task in lost:
                read = await api.get(f"/v1/tasks/{task['task_id']}", headers=bearer(key))
                if read.json()["state"] != TaskState.COMPLETED:
                    return False
            return True

        await wait_until_async(
            all_completed, timeout_s=15, what="the safety net to find the lost callbacks' answers"
        )
        client_id = await client_of(sessions, lost[0]["task_id"])
        record = await record_of(sessions, client_id)
        assert record.heard == 0
        assert record.missed == pytest.approx(3.0, rel=0.01)  # decayed a little since
        assert not record.trusted

        # Untrusted: the next check's first poll is a registered task's second step, not the net.
        fresh_sim.control.configure(submit_script="ring-0-60s")
        before = datetime.now(UTC)
        untrusted = (await submit(api, key, idempotency_key="after")).json()
        first_poll = datetime.fromisoformat(untrusted["next_poll_at"])
        assert before + timedelta(seconds=0.8) <= first_poll
        assert first_poll <= datetime.now(UTC) + timedelta(seconds=1.2)

        # The upstream callback of a lost one comes after all, a moment late: heard, not missed,
        # and only once however often it comes.
        token = await callback_token(api, key)
        assert (await hint(api, token, lost[0]["task_id"])).status_code == 200
        assert (await hint(api, token, lost[0]["task_id"])).status_code == 200

    record = await record_of(sessions, client_id)
    assert record.heard == pytest.approx(1.0, rel=0.01)
    assert record.missed == pytest.approx(2.0, rel=0.01)


async def client_of(sessions: async_sessionmaker[AsyncSession], task_id: str) -> int:
    async with transaction(sessions) as session:
        row = await session.execute(
            text("SELECT client_id FROM tasks WHERE task_id = :task_id"), {"task_id": task_id}
        )
        return int(row.scalar_one())
