"""One reaction to upstream's refusals for polls and submits alike: the same refused answer,
whether a worker's poll or an API's submit met it, opens the same pause, blocks and slows the
same shared ceiling and moves the caller's gate the same way. Real Redis, PostgreSQL and
simulator; each caller is its real service, built on the reaction the test holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.checks.callback_hints import CallbackUrls
from service.checks.submit import SubmitService
from service.clock import utc_now
from service.config import Settings
from service.domain.refusals import MIN_MULTIPLIER
from service.engine.poller import PollService
from service.heartbeat import LeaseKeeper
from service.sim.server import SimServer
from service.store.db import transaction
from service.store.poll_claims import claim_due_tasks
from service.upstream.client import UpstreamClient
from service.upstream.pause import read_pause
from service.upstream.probe import PROBE_KEY
from service.upstream.reaction import UpstreamReaction
from service.webhooks.batch_delivery import DeliveryService
from tests.support.checks import check_request
from tests.support.factories import insert_client, insert_tasks
from tests.support.rows import cancel_pending_tasks
from tests.support.settings import engine_settings

pytestmark = pytest.mark.usefixtures("flush_redis")

Sessions = async_sessionmaker[AsyncSession]
# One call upstream through a caller's real service, on the reaction it is given.
Caller = Callable[[Settings, Sessions, "Redis[Any]", UpstreamReaction], Awaitable[None]]


@pytest.fixture
def settings_for_calls(database_url: str, redis_url: str, fresh_sim: SimServer) -> Settings:
    return engine_settings(database_url, redis_url, fresh_sim.base_url, pause_probe_s=5.0)


@pytest.fixture
async def redis(settings_for_calls: Settings) -> AsyncIterator[Redis[Any]]:
    client: Redis[Any] = Redis.from_url(settings_for_calls.require_redis_url())
    yield client
    await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


async def poll_one_task(
    settings: Settings, sessions: Sessions, redis: Redis[Any], reaction: UpstreamReaction
) -> None:
    # Other tests' pending tasks would be claimed with ours.
    await cancel_pending_tasks(sessions)
    await insert_tasks(sessions, await insert_client(sessions), ["sim-ring-0-reaction"])
    async with transaction(sessions) as session:
        token, ids = await claim_due_tasks(session, utc_now(), settings.lease_s, limit=1)
    upstream = UpstreamClient(settings)
    leases = LeaseKeeper(sessions, settings.lease_s)
    deliveries = DeliveryService.from_settings(settings, sessions, leases)
    poller = PollService(settings, sessions, upstream, reaction, leases, deliveries)
    try:
        report = await poller.poll_batch(ids, token)
    finally:
        await deliveries.close()
        await upstream.aclose()
    assert report.calls == 1


def no_connection() -> AbstractAsyncContextManager[AsyncConnection[DictRow]]:
    raise AssertionError("without a public URL no callback token is read")


async def submit_one_check(
    settings: Settings, sessions: Sessions, redis: Redis[Any], reaction: UpstreamReaction
) -> None:
    callbacks = CallbackUrls(settings, no_connection)
    service = SubmitService(settings, sessions, redis, callbacks, reaction)
    try:
        await service.submit(await insert_client(sessions), check_request(), None)
    finally:
        await service.close()


CALLERS = pytest.mark.parametrize("call", [poll_one_task, submit_one_check], ids=["poll", "submit"])


@CALLERS
async def test_an_account_problem_pauses_every_process_and_the_callers_gate_at_once(
    call: Caller,
    settings_for_calls: Settings,
    sessions: Sessions,
    redis: Redis[Any],
    fresh_sim: SimServer,
) -> None:
    reaction = UpstreamReaction.from_settings(redis, settings_for_calls)
    fresh_sim.control.force("key_expired", calls=1)

    await call(settings_for_calls, sessions, redis, reaction)

    pause = await read_pause(redis)
    assert pause is not None
    assert pause.reason == "KEY_EXPIRED"
    assert reaction.gate.last_state().paused
    # The probe timer restarted: no probe follows the answer that opened the pause at once.
    assert await redis.pttl(PROBE_KEY) > 4000


@CALLERS
async def test_rate_limit_exceeded_blocks_for_its_retry_after_and_slows_by_the_refused_share(
    call: Caller,
    settings_for_calls: Settings,
    sessions: Sessions,
    redis: Redis[Any],
    fresh_sim: SimServer,
) -> None:
    reaction = UpstreamReaction.from_settings(redis, settings_for_calls)
    fresh_sim.control.set_faults(force={"mode": "rate_limit", "calls": 1}, retry_after_s=2)

    await call(settings_for_calls, sessions, redis, reaction)

    status = await reaction.limiter.status()
    assert 1.0 < status.blocked_for_s <= 2.0
    assert 1.0 < reaction.gate.last_state().blocked_for_s <= 2.0
    # The window holds one call, refused: the strongest decrease, as for any caller.
    assert status.factor == pytest.approx(MIN_MULTIPLIER, abs=0.01)


@CALLERS
async def test_an_answer_clears_the_pause_a_caller_believed_in(
    call: Caller,
    settings_for_calls: Settings,
    sessions: Sessions,
    redis: Redis[Any],
    fresh_sim: SimServer,
) -> None:
    reaction = UpstreamReaction.from_settings(redis, settings_for_calls)
    # This process saw an account problem; meanwhile another process's probe closed the pause.
    reaction.gate.learn_paused(True)

    await call(settings_for_calls, sessions, redis, reaction)

    assert not reaction.gate.believes_paused()
    assert await read_pause(redis) is None
