"""The adaptive schedule in the worker's poll service, on the real database and simulator: what
completions teach the estimates, concurrent batches merged, a restart keeping what was learnt,
the cold-start fallback, and a change of PHONEBRIDGE_POLL_SCHEDULE taking effect at the next
poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.completion import BIN_COUNT, CompletionEstimate
from service.runtime import WorkerResources, close_resources, open_resources
from service.sim.server import SimServer
from service.store.db import transaction
from service.store.estimates import ACCOUNT_WIDE, add_to_estimates
from service.store.poll_claims import claim_due_tasks
from tests.support.estimates import estimate_of, uniform_estimate
from tests.support.factories import insert_client, insert_tasks
from tests.support.rows import tasks_of
from tests.support.settings import engine_settings

pytestmark = pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks", "no_estimates")

HALF_LIFE_S = 3600.0


def schedule_settings(database_url: str, redis_url: str, sim: SimServer, **extra: Any) -> Settings:
    """Delays of 1 to 300 s, so backoff (about 1 s at first) and adaptive differ clearly."""
    values: dict[str, Any] = {
        "poll_initial_s": 1.0,
        "poll_max_s": 300.0,
        "poll_estimate_min_completions": 5.0,
        "poll_estimate_half_life_s": HALF_LIFE_S,
    }
    return engine_settings(database_url, redis_url, sim.base_url, **(values | extra))


@asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[WorkerResources]:
    """A worker's poll service, as `phonebridge worker` builds it; leaving it is a restart."""
    resources = await open_resources(settings, db_pool_size=2)
    try:
        yield resources
    finally:
        await close_resources(resources)


async def poll_due(resources: WorkerResources, ids: list[int], at: datetime | None = None) -> None:
    """Claim `ids` (due at `at`, default now) and poll them as one batch."""
    async with transaction(resources.sessions) as session:
        token, claimed = await claim_due_tasks(session, at or utc_now(), 30, limit=1000)
    assert set(ids) <= set(claimed)
    await resources.poller.poll_batch(claimed, token)


def unique(prefix: str, count: int) -> list[str]:
    stamp = time.monotonic_ns()
    return [f"{prefix}-{stamp}-{i}" for i in range(count)]


async def test_completions_teach_the_account_and_each_client_when_answers_arrive(
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    database_url: str,
    redis_url: str,
) -> None:
    settings = schedule_settings(database_url, redis_url, fresh_sim)
    one, two = await insert_client(sessions), await insert_client(sessions)
    # Submitted 20 s ago: answered PENDING once, then OK at the next poll.
    submitted = utc_now() - timedelta(seconds=20)
    first = await insert_tasks(sessions, one, unique("sim-ring-1", 6), now=submitted, ttl_s=600)
    second = await insert_tasks(sessions, two, unique("sim-busy-1", 4), now=submitted, ttl_s=600)
    async with worker(settings) as resources:
        await poll_due(resources, first + second)
        rows = await tasks_of(sessions, one)
        assert all(row["last_pending_at"] is not None for row in rows.values())
        await poll_due(resources, first + second, at=utc_now() + timedelta(seconds=5))

    account = await estimate_of(sessions, settings.upstream_account)
    mine = await estimate_of(sessions, settings.upstream_account, one)
    theirs = await estimate_of(sessions, settings.upstream_account, two)
    assert account is not None
    assert mine is not None
    assert theirs is not None
    assert account.as_of(account.updated_at, HALF_LIFE_S).total == pytest.approx(10)
    assert mine.as_of(mine.updated_at, HALF_LIFE_S).total == pytest.approx(6)
    assert theirs.as_of(theirs.updated_at, HALF_LIFE_S).total == pytest.approx(4)
    # The answers arrived after the PENDING answer at age ~20 s and by the OK one, a moment
    # later: the estimate puts them there, to the resolution of its bins (26% of the age).
    learnt = account.as_of(account.updated_at, HALF_LIFE_S)
    assert 20.0 / 1.27 < learnt.quantile(0.01) <= learnt.quantile(0.99) < 22.0 * 1.27


async def test_concurrent_batches_all_count_and_old_evidence_decays(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    account = f"test-{time.monotonic_ns()}"
    now = utc_now()
    unit = [1.0] + [0.0] * (BIN_COUNT - 1)

    async def add(client_id: int) -> None:
        async with transaction(sessions) as session:
            await add_to_estimates(
                session, account, {ACCOUNT_WIDE: unit, client_id: unit}, now, HALF_LIFE_S
            )

    await asyncio.gather(*(add(client_id) for client_id in (1, 2, 3, 1, 2, 3, 1, 2)))
    stored = await estimate_of(sessions, account)
    assert stored is not None
    assert stored.weights[0] == pytest.approx(8.0)
    per_client = await estimate_of(sessions, account, 1)
    assert per_client is not None
    assert per_client.weights[0] == pytest.approx(3.0)
    # A half-life later, the stored weight counts half beside the new one.
    async with transaction(sessions) as session:
        later = now + timedelta(seconds=HALF_LIFE_S)
        await add_to_estimates(session, account, {ACCOUNT_WIDE: unit}, later, HALF_LIFE_S)
    stored = await estimate_of(sessions, account)
    assert stored is not None
    assert stored.weights[0] == pytest.approx(8.0 / 2 + 1.0)
    assert stored.updated_at == later


async def seed(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> float:
    """Store a warm estimate for the account: answers uniform over about the first minute.
    Returns the age by which every answer has arrived."""
    estimate, end = uniform_estimate(up_to_bin=25)
    async with transaction(sessions) as session:
        await add_to_estimates(
            session,
            settings.upstream_account,
            {ACCOUNT_WIDE: estimate.weights},
            utc_now(),
            HALF_LIFE_S,
        )
    return end


# next_poll_at counts from the answer, updated_at is the write-back a moment later; on a busy
# machine that moment can be a few hundred milliseconds.
SLACK_S = 0.5


async def next_poll_in_s(
    sessions: async_sessionmaker[AsyncSession], client: int, task_id: str
) -> float:
    row = (await tasks_of(sessions, client))[task_id]
    return float((row["next_poll_at"] - row["updated_at"]).total_seconds())


async def test_a_restarted_worker_schedules_from_what_was_learnt_before(
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    database_url: str,
    redis_url: str,
) -> None:
    settings = schedule_settings(database_url, redis_url, fresh_sim)
    client = await insert_client(sessions)
    # Learnt by one worker: answers within a second of submission.
    quick = await insert_tasks(sessions, client, unique("sim-ring-0", 8), ttl_s=600)
    async with worker(settings) as resources:
        await poll_due(resources, quick)
    # A task ten seconds old is already past every answer seen: the restarted worker doubles its
    # age (dithered down by up to a tenth); backoff would have come back after about a second.
    (late,) = unique("sim-never", 1)
    (task_pk,) = await insert_tasks(
        sessions, client, [late], now=utc_now() - timedelta(seconds=10), ttl_s=600
    )
    async with worker(settings) as restarted:
        await poll_due(restarted, [task_pk])
    row = (await tasks_of(sessions, client))[late]
    age = (row["last_pending_at"] - row["submitted_at"]).total_seconds()
    assert 0.9 * age - SLACK_S <= await next_poll_in_s(sessions, client, late) <= age + 0.01


async def test_a_cold_estimate_falls_back_to_backoff(
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    database_url: str,
    redis_url: str,
) -> None:
    settings = schedule_settings(database_url, redis_url, fresh_sim)
    client = await insert_client(sessions)
    (name,) = unique("sim-never", 1)
    ids = await insert_tasks(sessions, client, [name], now=utc_now() - timedelta(seconds=10))
    async with worker(settings) as resources:
        await poll_due(resources, ids)
    # The first backoff delay, 1 s ± 20% (then clamped to at least 1 s).
    assert 1.0 - SLACK_S <= await next_poll_in_s(sessions, client, name) <= 1.2
    row = (await tasks_of(sessions, client))[name]
    assert row["finish_p"] is None


async def test_a_change_of_schedule_takes_effect_on_the_next_poll(
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    database_url: str,
    redis_url: str,
) -> None:
    end = await seed(sessions, schedule_settings(database_url, redis_url, fresh_sim))
    client = await insert_client(sessions)
    (name,) = unique("sim-never", 1)
    submitted = utc_now() - timedelta(seconds=10)
    ids = await insert_tasks(sessions, client, [name], now=submitted, ttl_s=600)

    backoff = schedule_settings(database_url, redis_url, fresh_sim, poll_schedule="backoff")
    async with worker(backoff) as resources:
        await poll_due(resources, ids)
    assert 1.0 - SLACK_S <= await next_poll_in_s(sessions, client, name) <= 1.2

    adaptive = schedule_settings(database_url, redis_url, fresh_sim, poll_schedule="adaptive")
    async with worker(adaptive) as resources:
        await poll_due(resources, ids, at=utc_now() + timedelta(seconds=2))
    row = (await tasks_of(sessions, client))[name]
    # Uniform answers over (0, end], pending at age a: the next poll at a + p·(end - a), p = 1/2
    # (the default budget of 3 calls per task), dithered down by up to a tenth.
    age = (row["last_pending_at"] - submitted).total_seconds()
    expected = (1 / 2) * (end - age)
    assert (
        0.9 * expected - SLACK_S <= await next_poll_in_s(sessions, client, name) <= expected + 0.01
    )
    assert 0.45 - 0.01 <= row["finish_p"] <= 1 / 2 + 0.01


async def test_the_estimate_read_back_is_the_one_stored(
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    database_url: str,
    redis_url: str,
) -> None:
    settings = schedule_settings(database_url, redis_url, fresh_sim)
    await seed(sessions, settings)
    stored = await estimate_of(sessions, settings.upstream_account)
    assert stored is not None
    expected, _ = uniform_estimate(up_to_bin=25)
    assert CompletionEstimate.of(stored.weights).weights == pytest.approx(expected.weights)


async def test_a_task_that_will_expire_unanswered_teaches_that_its_answer_comes_later(
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    database_url: str,
    redis_url: str,
) -> None:
    """Its last call (the next would start within the deadline's margin) answers PENDING at age
    ~50 s: the estimate gets one unit of weight past that age, a right-censored observation,
    so the answers that never came in time are not forgotten."""
    settings = schedule_settings(database_url, redis_url, fresh_sim)
    client = await insert_client(sessions)
    (name,) = unique("sim-never", 1)
    submitted = utc_now() - timedelta(seconds=50)
    ids = await insert_tasks(sessions, client, [name], now=submitted, ttl_s=51.5)
    async with worker(settings) as resources:
        await poll_due(resources, ids)

    row = (await tasks_of(sessions, client))[name]
    assert row["state"] == "pending"
    assert row["next_poll_at"] == row["expires_at"]
    stored = await estimate_of(sessions, settings.upstream_account)
    assert stored is not None
    learnt = stored.as_of(stored.updated_at, HALF_LIFE_S)
    assert learnt.total == pytest.approx(1.0)
    # Past its age, to the resolution of the bins (26% of the age).
    assert learnt.cdf(50.0 / 1.27) == 0.0
