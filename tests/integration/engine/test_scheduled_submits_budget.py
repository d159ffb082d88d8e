"""The scheduled submits' sender (service/engine/scheduled_submits.py) under the daily check
budget, against the simulator and on a clock the test moves: each re-check counts in its client's
day; past the budget it is not sent but waits, due at the next UTC midnight, and is sent then;
the client's running jobs are paused for the budget at the same time; a client without a limit
is never counted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.domain.answers import PhoneResult
from service.domain.budgets import next_utc_midnight, utc_day
from service.domain.rechecks import RecheckPolicy
from service.engine.scheduled_submits import ScheduledSubmitService, SubmitBatchReport
from service.sealed_numbers import number_seal_for, recheck_binding
from service.sim.server import SimServer
from service.store.budgets import checks_on
from service.store.checks import NewTask, record_submitted_task
from service.store.db import transaction
from service.store.scheduled_submits import claim_due_submits, hold_number_for_rechecks
from service.upstream.client import UpstreamClient
from service.upstream.reaction import UpstreamReaction
from tests.support.checks import PHONE_MASKED, scheduled_submit_of, submit_calls
from tests.support.factories import insert_client
from tests.support.jobs_store import delete_jobs_made_here, job_in_state, job_row, job_submits
from tests.support.settings import engine_settings

pytestmark = pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks")

# An hour before a UTC midnight.
LATE_EVENING = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)
RETRY = PhoneResult("52******1234", "temp_unavailable")


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def budget_settings(database_url: str, redis_url: str, fresh_sim: SimServer) -> Settings:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    return engine_settings(database_url, redis_url, fresh_sim.base_url, client_max_checks_per_day=1)


@pytest.fixture
async def no_jobs_left(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    yield
    await delete_jobs_made_here(sessions)


@pytest.fixture
async def sender(
    budget_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis[Any],
) -> AsyncIterator[tuple[ScheduledSubmitService, MovableClock]]:
    clock = MovableClock(LATE_EVENING)
    upstream = UpstreamClient(budget_settings)
    service = ScheduledSubmitService(
        budget_settings,
        sessions,
        upstream,
        UpstreamReaction.from_settings(redis_client, budget_settings),
        clock=clock,
    )
    yield service, clock
    await service.close()
    await upstream.aclose()


async def waiting_recheck(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    client_id: int,
    number: str,
    now: datetime,
) -> str:
    """A submitted check answered `temp_unavailable`, its re-check due now and its deadline a
    day away; its task_id."""
    task_id = f"T-{uuid.uuid4().hex}"
    async with transaction(sessions) as session:
        task = await record_submitted_task(
            session,
            NewTask(
                client_id=client_id,
                task_id=task_id,
                masked=PHONE_MASKED,
                metadata_json="{}",
                now=now,
                expires_at=now + timedelta(hours=20),
                first_poll_at=now,
                result=RETRY,
                request_id="TID1",
                recheck=RecheckPolicy(after_s=60, max_rechecks=1),
                waits_for_recheck=True,
            ),
        )
        await hold_number_for_rechecks(
            session,
            client_id=client_id,
            task_pk=task.id,
            sealed=number_seal_for(settings).seal(number, recheck_binding(client_id, task_id)),
            due_at=now,
            now=now,
        )
    return task_id


async def send_due(
    sessions: async_sessionmaker[AsyncSession], service: ScheduledSubmitService, now: datetime
) -> SubmitBatchReport:
    async with transaction(sessions) as session:
        token, ids = await claim_due_submits(session, now, lease_s=30, limit=100)
    return await service.submit_batch(ids, token)


async def counted(sessions: async_sessionmaker[AsyncSession], client_id: int, at: datetime) -> int:
    async with transaction(sessions) as session:
        return await checks_on(session, client_id, utc_day(at))


@pytest.mark.usefixtures("no_jobs_left")
async def test_a_recheck_past_the_budget_waits_for_the_next_utc_day_and_pauses_the_clients_jobs(
    sender: tuple[ScheduledSubmitService, MovableClock],
    budget_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
) -> None:
    service, clock = sender
    client_id = await insert_client(sessions)
    first = await waiting_recheck(sessions, budget_settings, client_id, "525512340001", clock.now)
    second = await waiting_recheck(sessions, budget_settings, client_id, "525512340002", clock.now)
    job = await job_in_state(sessions, budget_settings, client_id, clock.now - timedelta(hours=1))
    # The job's submits are already waiting for the next day: they are not due yet.
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE scheduled_submits SET due_at = :d WHERE job_pk = :j"),
            {"d": next_utc_midnight(clock.now) + timedelta(hours=1), "j": job.id},
        )

    report = await send_due(sessions, service, clock.now)

    assert (report.sent, report.handed_back) == (1, 1)
    assert submit_calls(fresh_sim) == 1
    assert await counted(sessions, client_id, clock.now) == 1
    rows = {task_id: await scheduled_submit_of(sessions, task_id) for task_id in (first, second)}
    waiting = [row for row in rows.values() if row is not None and row["state"] == "waiting"]
    assert len(waiting) == 1
    assert waiting[0]["due_at"] == next_utc_midnight(clock.now)
    assert waiting[0]["lease_token"] is None
    paused = await job_row(sessions, job.id)
    assert (paused["state"], paused["paused_reason"]) == ("paused", "budget")
    assert {s["state"] for s in await job_submits(sessions, job.id)} == {"standby"}

    # Before midnight nothing is due; after it, the re-check is sent on the new day's budget.
    assert (await send_due(sessions, service, clock.now + timedelta(minutes=30))).sent == 0
    clock.now = next_utc_midnight(clock.now) + timedelta(seconds=1)
    again = await send_due(sessions, service, clock.now)
    assert again.sent == 1
    assert submit_calls(fresh_sim) == 2
    assert await counted(sessions, client_id, clock.now) == 1


async def test_a_client_without_a_limit_of_its_own_or_a_setting_is_never_counted(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis[Any],
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    settings = engine_settings(database_url, redis_url, fresh_sim.base_url)
    client_id = await insert_client(sessions)
    for index in range(3):
        await waiting_recheck(sessions, settings, client_id, f"52551234010{index}", LATE_EVENING)
    upstream = UpstreamClient(settings)
    service = ScheduledSubmitService(
        settings,
        sessions,
        upstream,
        UpstreamReaction.from_settings(redis_client, settings),
        clock=MovableClock(LATE_EVENING),
    )
    try:
        report = await send_due(sessions, service, LATE_EVENING)
    finally:
        await upstream.aclose()

    assert report.sent == 3
    async with transaction(sessions) as session:
        rows = await session.execute(
            text("SELECT count(*) FROM client_check_days WHERE client_id = :c"), {"c": client_id}
        )
    assert rows.scalar_one() == 0
