"""The daily check budget's ledger and the jobs it pauses and resumes (service/store/budgets.py),
statement by statement on the real PostgreSQL: checks taken all or nothing and never past the
limit however many transactions take at once, given back, counted per UTC day; a client's active
jobs paused for the budget with their waiting submits on standby, and resumed on the next day or
under a raised limit, while the jobs the budget did not pause stay as they are."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.budgets import next_utc_midnight, utc_day
from service.domain.states import JobState, PausedReason
from service.store.budgets import (
    checks_on,
    daily_limits,
    give_back_checks,
    pause_jobs_for_budget,
    resume_jobs_for_budget,
    take_checks,
)
from service.store.db import transaction
from service.store.scheduled_submits import hold_number_for_rechecks
from tests.support.checks import insert_submitted_task
from tests.support.factories import insert_client
from tests.support.jobs_store import delete_jobs_made_here, job_in_state, job_row, job_submits

DAY = date(2026, 12, 7)


@pytest.fixture(autouse=True)
async def no_jobs_left(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    yield
    await delete_jobs_made_here(sessions)


async def take(
    sessions: async_sessionmaker[AsyncSession], client_id: int, n: int, limit: int, day: date = DAY
) -> bool:
    async with transaction(sessions) as session:
        return await take_checks(session, client_id=client_id, day=day, n=n, limit=limit)


async def counted(
    sessions: async_sessionmaker[AsyncSession], client_id: int, day: date = DAY
) -> int:
    async with transaction(sessions) as session:
        return await checks_on(session, client_id, day)


async def set_own_limit(
    sessions: async_sessionmaker[AsyncSession], client_id: int, limit: int | None
) -> None:
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE clients SET max_checks_per_day = :l WHERE id = :c"),
            {"l": limit, "c": client_id},
        )


async def test_checks_are_taken_all_or_nothing_up_to_the_limit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    assert await take(sessions, client_id, 2, limit=3)
    assert not await take(sessions, client_id, 2, limit=3)
    assert await counted(sessions, client_id) == 2
    assert await take(sessions, client_id, 1, limit=3)
    assert not await take(sessions, client_id, 1, limit=3)
    assert await counted(sessions, client_id) == 3


async def test_more_than_the_limit_at_once_is_refused_and_counts_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    assert not await take(sessions, client_id, 4, limit=3)
    assert await counted(sessions, client_id) == 0


async def test_a_raised_limit_lets_more_checks_in_the_same_day(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    assert await take(sessions, client_id, 1, limit=1)
    assert not await take(sessions, client_id, 1, limit=1)
    assert await take(sessions, client_id, 1, limit=2)


async def test_each_utc_day_has_its_own_count(sessions: async_sessionmaker[AsyncSession]) -> None:
    client_id = await insert_client(sessions)
    assert await take(sessions, client_id, 1, limit=1)
    assert not await take(sessions, client_id, 1, limit=1)
    assert await take(sessions, client_id, 1, limit=1, day=DAY + timedelta(days=1))


async def test_clients_have_separate_counts(sessions: async_sessionmaker[AsyncSession]) -> None:
    spent, other = await insert_client(sessions), await insert_client(sessions)
    assert await take(sessions, spent, 1, limit=1)
    assert await take(sessions, other, 1, limit=1)


async def test_many_transactions_at_once_never_take_more_than_the_limit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    # The first take of the day races on the row's creation too.
    results = await asyncio.gather(*(take(sessions, client_id, 1, limit=7) for _ in range(30)))
    assert sum(results) == 7
    assert await counted(sessions, client_id) == 7


async def test_a_check_given_back_can_be_taken_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    assert await take(sessions, client_id, 1, limit=1)
    async with transaction(sessions) as session:
        await give_back_checks(session, client_id=client_id, day=DAY, n=1)
    assert await counted(sessions, client_id) == 0
    assert await take(sessions, client_id, 1, limit=1)


async def test_giving_back_never_counts_below_zero(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    assert await take(sessions, client_id, 1, limit=5)
    async with transaction(sessions) as session:
        await give_back_checks(session, client_id=client_id, day=DAY, n=3)
        # A day with no row: nothing to give back, nothing written.
        await give_back_checks(session, client_id=client_id, day=DAY - timedelta(days=1), n=1)
    assert await counted(sessions, client_id) == 0
    assert await counted(sessions, client_id, DAY - timedelta(days=1)) == 0


@pytest.mark.parametrize(
    ("own", "setting", "expected"),
    [(None, 0, None), (None, 5, 5), (9, 0, 9), (9, 5, 9), (0, 5, None)],
)
async def test_the_limit_of_each_client_is_its_own_over_the_setting(
    sessions: async_sessionmaker[AsyncSession], own: int | None, setting: int, expected: int | None
) -> None:
    client_id = await insert_client(sessions)
    await set_own_limit(sessions, client_id, own)
    async with transaction(sessions) as session:
        limits = await daily_limits(session, {client_id}, setting)
    assert limits.get(client_id) == expected


# --- jobs ----------------------------------------------------------------------------------------


async def test_a_spent_budget_pauses_the_clients_active_jobs_and_hides_their_submits(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    now = utc_now()
    client_id = await insert_client(sessions)
    running = await job_in_state(sessions, settings, client_id, now)
    queued = await job_in_state(sessions, settings, client_id, now, state=JobState.QUEUED)
    draft = await job_in_state(sessions, settings, client_id, now, state=JobState.DRAFT)
    by_client = await job_in_state(
        sessions, settings, client_id, now, state=JobState.PAUSED, paused_reason=PausedReason.CLIENT
    )
    elsewhere = await job_in_state(sessions, settings, await insert_client(sessions), now)
    task = await insert_submitted_task(
        sessions, client_id, "T-budget-recheck", now, first_poll_in=timedelta(seconds=5)
    )
    async with transaction(sessions) as session:
        await hold_number_for_rechecks(
            session, client_id=client_id, task_pk=task.id, sealed=b"\x01" * 40, due_at=now, now=now
        )
        # One of the running job's submits is leased to a worker that has not sent it yet.
        await session.execute(
            text(
                "UPDATE scheduled_submits SET lease_token = gen_random_uuid(), lease_until = :u"
                " WHERE job_pk = :j AND job_line = 1"
            ),
            {"u": now + timedelta(seconds=30), "j": running.id},
        )
        paused = await pause_jobs_for_budget(session, client_id, now)

    assert sorted(job.id for job in paused) == sorted([running.id, queued.id])
    for job in (running, queued):
        row = await job_row(sessions, job.id)
        assert (row["state"], row["paused_reason"]) == ("paused", "budget")
        submits = await job_submits(sessions, job.id)
        assert {s["state"] for s in submits} == {"standby"}
        assert {s["lease_token"] for s in submits} == {None}
        assert all(s["phone_number_sealed"] is not None for s in submits)
    assert (await job_row(sessions, draft.id))["state"] == "draft"
    row = await job_row(sessions, by_client.id)
    assert (row["state"], row["paused_reason"]) == ("paused", "client")
    assert (await job_row(sessions, elsewhere.id))["state"] == "running"
    assert {s["state"] for s in await job_submits(sessions, elsewhere.id)} == {"waiting"}
    async with transaction(sessions) as session:
        recheck_state = (
            await session.execute(
                text("SELECT state FROM scheduled_submits WHERE task_pk = :t"), {"t": task.id}
            )
        ).scalar_one()
    assert recheck_state == "waiting"


async def test_pausing_again_moves_nothing(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    now = utc_now()
    client_id = await insert_client(sessions)
    await job_in_state(sessions, settings, client_id, now)
    async with transaction(sessions) as session:
        assert len(await pause_jobs_for_budget(session, client_id, now)) == 1
        assert await pause_jobs_for_budget(session, client_id, now) == []


async def budget_paused_job(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, client_id: int, now: datetime
) -> int:
    job = await job_in_state(sessions, settings, client_id, now)
    async with transaction(sessions) as session:
        await pause_jobs_for_budget(session, client_id, now)
    return job.id


async def resume(
    sessions: async_sessionmaker[AsyncSession], now: datetime, setting: int = 0
) -> set[int]:
    async with transaction(sessions) as session:
        return {job.id for job in await resume_jobs_for_budget(session, now, setting, 1000)}


async def test_a_budget_paused_job_resumes_on_the_next_utc_day(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    now = utc_now()
    client_id = await insert_client(sessions)
    await set_own_limit(sessions, client_id, 2)
    assert await take(sessions, client_id, 2, limit=2, day=utc_day(now))
    job_pk = await budget_paused_job(sessions, settings, client_id, now)

    assert job_pk not in await resume(sessions, now)
    assert (await job_row(sessions, job_pk))["state"] == "paused"

    tomorrow = next_utc_midnight(now) + timedelta(seconds=1)
    assert job_pk in await resume(sessions, tomorrow)
    row = await job_row(sessions, job_pk)
    assert (row["state"], row["paused_reason"]) == ("running", None)
    submits = await job_submits(sessions, job_pk)
    assert {s["state"] for s in submits} == {"waiting"}
    assert all(s["due_at"] <= tomorrow for s in submits)


async def test_a_raised_or_lifted_limit_resumes_a_budget_paused_job_the_same_day(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    now = utc_now()
    raised, lifted = await insert_client(sessions), await insert_client(sessions)
    jobs = []
    for client_id in (raised, lifted):
        await set_own_limit(sessions, client_id, 1)
        assert await take(sessions, client_id, 1, limit=1, day=utc_day(now))
        jobs.append(await budget_paused_job(sessions, settings, client_id, now))
    assert not set(jobs) & await resume(sessions, now)

    await set_own_limit(sessions, raised, 2)
    await set_own_limit(sessions, lifted, 0)
    assert set(jobs) <= await resume(sessions, now)


async def test_the_setting_applies_to_clients_without_a_limit_of_their_own(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    now = utc_now()
    client_id = await insert_client(sessions)
    assert await take(sessions, client_id, 3, limit=3, day=utc_day(now))
    job_pk = await budget_paused_job(sessions, settings, client_id, now)
    assert job_pk not in await resume(sessions, now, setting=3)
    assert job_pk in await resume(sessions, now, setting=4)


async def test_a_job_paused_by_its_client_or_upstream_is_not_resumed_for_the_budget(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    now = utc_now()
    client_id = await insert_client(sessions)
    jobs = [
        await job_in_state(
            sessions, settings, client_id, now, state=JobState.PAUSED, paused_reason=reason
        )
        for reason in (PausedReason.CLIENT, PausedReason.UPSTREAM)
    ]
    await resume(sessions, next_utc_midnight(now))
    for job, reason in zip(jobs, ("client", "upstream"), strict=True):
        row = await job_row(sessions, job.id)
        assert (row["state"], row["paused_reason"]) == ("paused", reason)
        assert {s["state"] for s in await job_submits(sessions, job.id)} == {"standby"}
