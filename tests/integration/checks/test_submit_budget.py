"""SubmitService (service/checks/submit.py) under a daily check budget, against the simulator and
on a clock the test moves: a check past the budget is refused 429 CHECK_BUDGET_EXHAUSTED with
Retry-After to the next UTC midnight, sends nothing and keeps nothing (its Idempotency-Key works
the next day); a replay costs nothing, an unknown outcome counts, a check that surely reached
nothing upstream is given back, and without a limit the ledger is never touched."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.app import create_app
from service.api.resources import ApiResources
from service.checks.submit import SubmitService
from service.config import Settings
from service.domain.budgets import utc_day
from service.sim.server import SimServer
from service.store.budgets import checks_on
from service.store.db import transaction
from service.upstream.reaction import UpstreamReaction
from tests.support.checks import check_request, checks_settings, submit_calls
from tests.support.factories import insert_client

pytestmark = pytest.mark.usefixtures("flush_redis")

# An hour before a UTC midnight.
LATE_EVENING = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def submit_service(
    settings: Settings, clock: Callable[[], datetime]
) -> AsyncIterator[SubmitService]:
    """The API process's submit service, on the test's clock."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        resources: ApiResources = app.state.resources
        service = SubmitService(
            settings,
            resources.sessions,
            resources.redis,
            resources.callbacks,
            UpstreamReaction.from_settings(resources.redis, settings),
            clock=clock,
        )
        try:
            yield service
        finally:
            await service.close()


def body_of(json_text: str) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(json_text)
    return body


async def counted(sessions: async_sessionmaker[AsyncSession], client_id: int, at: datetime) -> int:
    async with transaction(sessions) as session:
        return await checks_on(session, client_id, utc_day(at))


async def ledger_rows(sessions: async_sessionmaker[AsyncSession], client_id: int) -> int:
    async with transaction(sessions) as session:
        found = await session.execute(
            text("SELECT count(*) FROM client_check_days WHERE client_id = :c"), {"c": client_id}
        )
        return int(found.scalar_one())


@pytest.fixture
def sim_settings(database_url: str, redis_url: str, fresh_sim: SimServer) -> Settings:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    return checks_settings(database_url, redis_url, fresh_sim.base_url)


async def test_past_the_budget_a_check_is_refused_until_the_next_utc_midnight_and_not_sent(
    sim_settings: Settings, fresh_sim: SimServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id = await insert_client(sessions)
    clock = MovableClock(LATE_EVENING)
    async with submit_service(sim_settings, clock) as svc:
        answers = [
            await svc.submit(client_id, check_request(), None, checks_per_day=2) for _ in range(3)
        ]

    assert [a.status for a in answers] == [201, 201, 429]
    refused = answers[2]
    problem = body_of(refused.body_json)
    assert problem["code"] == "CHECK_BUDGET_EXHAUSTED"
    assert problem["status"] == 429
    assert "2 upstream checks per UTC day" in problem["detail"]
    assert refused.headers["Retry-After"] == "3600"
    assert not refused.created_pending
    assert submit_calls(fresh_sim) == 2
    assert await counted(sessions, client_id, LATE_EVENING) == 2


async def test_a_key_refused_for_the_budget_keeps_nothing_and_works_the_next_day(
    sim_settings: Settings, fresh_sim: SimServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id = await insert_client(sessions)
    clock = MovableClock(LATE_EVENING)
    async with submit_service(sim_settings, clock) as svc:
        spent = await svc.submit(client_id, check_request(), "first", checks_per_day=1)
        refused = await svc.submit(client_id, check_request(), "tomorrow", checks_per_day=1)
        async with transaction(sessions) as session:
            kept = await session.execute(
                text(
                    "SELECT count(*) FROM check_submissions WHERE idempotency_key = 'tomorrow'"
                    " AND client_id = :c"
                ),
                {"c": client_id},
            )
        clock.now = LATE_EVENING + timedelta(hours=1, seconds=1)
        retried = await svc.submit(client_id, check_request(), "tomorrow", checks_per_day=1)

    assert (spent.status, refused.status) == (201, 429)
    assert kept.scalar_one() == 0
    assert retried.status == 201
    assert not retried.replayed
    assert submit_calls(fresh_sim) == 2
    assert await counted(sessions, client_id, clock.now) == 1


async def test_a_replayed_key_costs_nothing(
    sim_settings: Settings, fresh_sim: SimServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id = await insert_client(sessions)
    clock = MovableClock(LATE_EVENING)
    async with submit_service(sim_settings, clock) as svc:
        first = await svc.submit(client_id, check_request(), "same", checks_per_day=1)
        again = await svc.submit(client_id, check_request(), "same", checks_per_day=1)

    assert first.status == again.status == 201
    assert again.replayed
    assert await counted(sessions, client_id, LATE_EVENING) == 1


async def test_an_outcome_upstream_may_hold_counts(
    sim_settings: Settings, fresh_sim: SimServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id = await insert_client(sessions)
    fresh_sim.control.force("internal_error", calls=1)
    async with submit_service(sim_settings, MovableClock(LATE_EVENING)) as svc:
        unknown = await svc.submit(client_id, check_request(), None, checks_per_day=5)

    assert unknown.status == 502
    assert body_of(unknown.body_json)["code"] == "SUBMIT_OUTCOME_UNKNOWN"
    assert await counted(sessions, client_id, LATE_EVENING) == 1


async def test_a_check_that_surely_reached_nothing_upstream_is_given_back(
    database_url: str, redis_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id = await insert_client(sessions)
    settings = checks_settings(
        database_url,
        redis_url,
        "http://127.0.0.1:9",
        upstream_api_id=None,
        upstream_api_secret=None,
    )
    async with submit_service(settings, MovableClock(LATE_EVENING)) as svc:
        refused = await svc.submit(client_id, check_request(), None, checks_per_day=1)
        again = await svc.submit(client_id, check_request(), None, checks_per_day=1)

    # Not the budget: the same refusal twice, and nothing counted.
    assert (refused.status, again.status) == (503, 503)
    assert body_of(again.body_json)["code"] == "NO_UPSTREAM_CREDENTIALS"
    assert await counted(sessions, client_id, LATE_EVENING) == 0


async def test_without_a_limit_the_ledger_is_never_touched(
    sim_settings: Settings, fresh_sim: SimServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id = await insert_client(sessions)
    async with submit_service(sim_settings, MovableClock(LATE_EVENING)) as svc:
        answers = [await svc.submit(client_id, check_request(), None) for _ in range(3)]

    assert [a.status for a in answers] == [201, 201, 201]
    assert submit_calls(fresh_sim) == 3
    assert await ledger_rows(sessions, client_id) == 0
