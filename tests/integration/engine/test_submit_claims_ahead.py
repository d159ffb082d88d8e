"""The scheduler claims scheduled submits no further ahead of the workers than they send soon
(service/domain/claims_ahead.py): with a second of the ceiling's submits claimed and unsent it
claims none, whatever the claims timeline would grant, and each submit begun (`submitting`) or
handed back makes room for one more. Without the bound a job's claims outran a worker limited to
its share of the ceiling, and their leases ran out in its queue (bench/jobs.py part a)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.engine.scheduler import SchedulerContext, SubmitDispatch
from service.store.db import transaction
from service.store.job_items import begin_item_submit, hand_back_item, load_claimed_items
from service.store.scheduled_submits import claim_due_submits, count_claimed_unsent
from service.upstream.ratelimit import UpstreamRateLimiter
from tests.support.factories import insert_client
from tests.support.jobs import mx_number
from tests.support.jobs_store import delete_jobs_made_here, make_job
from tests.support.settings import make_settings

pytestmark = pytest.mark.usefixtures("flush_redis")

# At 8 calls a second (a 10 s lease), 8 submits may be claimed ahead; the claims timeline alone
# grants a background claim a few at once (0.4 s of it: without the bound, the first tick here
# claimed 3 more).
CEILING_RPS = 8.0
ROOM = 8


@pytest.fixture(autouse=True)
async def no_jobs_left(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    await delete_jobs_made_here(sessions)
    yield
    await delete_jobs_made_here(sessions)


@pytest.fixture
def claim_settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url, upstream_max_rps=CEILING_RPS, lease_s=10.0)


async def test_claims_wait_while_a_second_of_submits_is_claimed_and_unsent(
    claim_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis[Any],
) -> None:
    # An hour ahead of the wall clock: a scheduler still running in this database (another test's
    # engine) claims by the wall clock, and its leases have ended by then.
    now = utc_now() + timedelta(hours=1)
    client_id = await insert_client(sessions)
    await make_job(sessions, claim_settings, client_id, [mx_number(i) for i in range(20)], now=now)
    async with transaction(sessions) as session:
        token, ids = await claim_due_submits(session, now, claim_settings.lease_s, limit=ROOM)
        assert await count_claimed_unsent(session, now) == ROOM
    published: list[list[int]] = []
    dispatch = SubmitDispatch(
        SchedulerContext(
            settings=claim_settings,
            sessions=sessions,
            redis=redis_client,
            limiter=UpstreamRateLimiter(redis_client, CEILING_RPS),
            publish_poll=lambda ids, token, probe: None,
        ),
        lambda ids, token: published.append(list(ids)),
    )

    await dispatch.run(now)
    assert published == []

    # Two begun and one handed back: room for three, claimed at the next tick.
    async with transaction(sessions) as session:
        items = await load_claimed_items(session, ids, token, now)
        for item in items[:2]:
            assert await begin_item_submit(session, item, token, now, now + timedelta(seconds=8))
        await hand_back_item(session, items[2], token, now, now + timedelta(minutes=5))
        assert await count_claimed_unsent(session, now) == ROOM - 3
    await dispatch.run(now)
    assert [len(batch) for batch in published] == [3]
    assert not set(published[0]) & set(ids)

    await dispatch.run(now)
    assert len(published) == 1
    async with transaction(sessions) as session:
        assert await count_claimed_unsent(session, now) == ROOM
        # Leases that ran out hold no room (the sweep and the next claim take those rows).
        later = now + timedelta(seconds=claim_settings.lease_s + 1)
        assert await count_claimed_unsent(session, later) == 0
