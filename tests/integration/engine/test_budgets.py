"""The scheduler's budget step (service/engine/budgets.py), run by the scheduler on a clock the
test moves: a job paused for its client's spent budget stays paused for the rest of the UTC day
and resumes by itself, its submits waiting again, once the next day begins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.domain.budgets import next_utc_midnight, utc_day
from service.engine.budgets import BudgetResume
from service.engine.scheduler import Scheduler, SchedulerContext, default_steps
from service.store.budgets import pause_jobs_for_budget, take_checks
from service.store.db import transaction
from service.upstream.ratelimit import UpstreamRateLimiter
from tests.support.factories import insert_client
from tests.support.jobs_store import delete_jobs_made_here, job_in_state, job_row, job_submits
from tests.support.settings import make_settings

LATE_EVENING = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(autouse=True)
async def no_jobs_left(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    yield
    await delete_jobs_made_here(sessions)


@pytest.fixture
def budget_settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url, client_max_checks_per_day=3)


async def test_a_budget_paused_job_resumes_by_itself_when_the_next_utc_day_begins(
    budget_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = MovableClock(LATE_EVENING)
    client_id = await insert_client(sessions)
    job = await job_in_state(sessions, budget_settings, client_id, clock.now)
    async with transaction(sessions) as session:
        assert await take_checks(session, client_id=client_id, day=utc_day(clock.now), n=3, limit=3)
        await pause_jobs_for_budget(session, client_id, clock.now)
    scheduler = Scheduler(
        [BudgetResume(sessions, budget_settings, interval_s=0)], tick_s=0.01, clock=clock
    )

    await scheduler.run_due_steps()
    row = await job_row(sessions, job.id)
    assert (row["state"], row["paused_reason"]) == ("paused", "budget")

    clock.now = next_utc_midnight(clock.now)
    await scheduler.run_due_steps()
    row = await job_row(sessions, job.id)
    assert (row["state"], row["paused_reason"]) == ("running", None)
    submits = await job_submits(sessions, job.id)
    assert {s["state"] for s in submits} == {"waiting"}
    assert all(s["due_at"] <= clock.now for s in submits)


async def test_the_scheduler_runs_the_budget_step(
    budget_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis[Any],
) -> None:
    context = SchedulerContext(
        settings=budget_settings,
        sessions=sessions,
        redis=redis_client,
        limiter=UpstreamRateLimiter(redis_client, budget_settings.upstream_max_rps),
        publish_poll=lambda ids, token, probe: None,
    )
    steps = default_steps(context)
    assert any(isinstance(step, BudgetResume) for step in steps)
    assert (
        next(s for s in steps if isinstance(s, BudgetResume)).interval_s
        <= timedelta(seconds=10).total_seconds()
    )
