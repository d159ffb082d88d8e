"""The rate ceiling when the worker's event loop is starved: a slot is only known to within the
reservation's round trip, and a call made late could land beside another worker's on-time call.
A poll late at the wire, which then gets no new slot, goes back due at once with nothing sent.
Real Redis, real simulator; the starvation is a blocking sleep right after Redis answered (or as
the call begins)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.domain.answers import RawAnswer
from service.engine.poller import PollService
from service.heartbeat import LeaseKeeper
from service.sim.server import SimServer
from service.store.db import transaction
from service.store.poll_claims import claim_due_tasks
from service.upstream.client import UpstreamClient
from service.upstream.gate import UpstreamGate
from service.upstream.ratelimit import (
    MAX_LATENESS_S,
    SAFETY_FACTOR,
    SlotReservation,
    UpstreamRateLimiter,
)
from service.upstream.reaction import UpstreamReaction
from service.webhooks.batch_delivery import DeliveryService
from tests.support.factories import insert_client, insert_tasks
from tests.support.rows import tasks_of
from tests.support.settings import engine_settings

pytestmark = pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks")

RATE = 10.0
INTERVAL_S = 1.0 / (RATE * SAFETY_FACTOR)
STARVED_S = 0.2


class StarvedAfterFirstReply(UpstreamRateLimiter):
    """The real limiter, but the process is starved (the loop blocked) just after Redis answers
    its first reservation: the slots it holds pass before it can use them."""

    reservations = 0

    async def reserve_calls(self, count: int) -> SlotReservation:
        reservation = await super().reserve_calls(count)
        self.reservations += 1
        if self.reservations == 1:
            time.sleep(STARVED_S)
        return reservation


def poller_of(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis[Any],
    limiter: UpstreamRateLimiter,
    upstream: UpstreamClient,
) -> tuple[PollService, DeliveryService]:
    """A worker's poller on `limiter` and `upstream`, and its delivery service (to close)."""
    reaction = UpstreamReaction(
        redis, limiter, UpstreamGate(redis, limiter), pause_probe_s=settings.pause_probe_s
    )
    leases = LeaseKeeper(sessions, settings.lease_s)
    deliveries = DeliveryService.from_settings(settings, sessions, leases)
    return PollService(settings, sessions, upstream, reaction, leases, deliveries), deliveries


async def test_a_starved_worker_takes_fresh_slots_instead_of_bunching_with_another(
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    database_url: str,
    redis_url: str,
) -> None:
    settings = engine_settings(database_url, redis_url, fresh_sim.base_url, upstream_max_rps=RATE)
    client = await insert_client(sessions)
    ids = await insert_tasks(sessions, client, [f"sim-ring-0-{i}" for i in range(3)])
    redis: Redis[Any] = Redis.from_url(settings.require_redis_url())
    limiter = StarvedAfterFirstReply(redis, RATE)
    upstream = UpstreamClient(settings)
    poller, deliveries = poller_of(settings, sessions, redis, limiter, upstream)
    other_upstream = UpstreamClient(settings)

    async def another_worker() -> None:
        """Reserves one slot while the first worker is starved and calls at it, on time."""
        await asyncio.sleep(STARVED_S / 2)
        reservation = await UpstreamRateLimiter(redis, RATE).reserve_calls(1)
        await asyncio.sleep(reservation.first_in_s)
        await other_upstream.fetch_task_result("sim-ring-0-other")

    try:
        async with transaction(sessions) as session:
            token, claimed = await claim_due_tasks(session, utc_now(), 30, limit=10)
        assert set(ids) <= set(claimed)
        other = asyncio.create_task(another_worker())
        report = await poller.poll_batch(claimed, token)
        await other
    finally:
        await deliveries.close()
        await upstream.aclose()
        await other_upstream.aclose()
        await redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose

    assert report.calls == 3
    assert limiter.reservations >= 2, "the slots that passed while starved were not used"
    times = sorted(call["at"] for call in fresh_sim.control.calls(endpoint="task_result"))
    assert len(times) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= INTERVAL_S * 0.75, gaps


class LateToTheWire(UpstreamClient):
    """The real client, but the loop is blocked as each call begins, past its slot's last moment:
    the call is refused at the wire, nothing of it sent."""

    async def fetch_task_result(self, task_id: str) -> RawAnswer:
        time.sleep(2 * MAX_LATENESS_S)  # blocking the loop is the point
        return await super().fetch_task_result(task_id)


class BookedAheadThenAway(UpstreamRateLimiter):
    """The fleet is at the ceiling (another worker booked the next slot first), and after the
    batch's reservation Redis is away."""

    reservations = 0

    async def reserve_calls(self, count: int) -> SlotReservation:
        self.reservations += 1
        if self.reservations > 1:
            raise ConnectionError("redis away")
        await UpstreamRateLimiter(self._redis, self.max_rps).reserve_calls(1)
        return await super().reserve_calls(count)


async def test_a_poll_late_at_the_wire_without_a_new_slot_goes_back_unpolled(
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    database_url: str,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = engine_settings(database_url, redis_url, fresh_sim.base_url, upstream_max_rps=RATE)
    client = await insert_client(sessions)
    [task_pk] = await insert_tasks(sessions, client, ["sim-ring-0-late-at-wire"])
    redis: Redis[Any] = Redis.from_url(settings.require_redis_url())
    upstream = LateToTheWire(settings)
    poller, deliveries = poller_of(
        settings, sessions, redis, BookedAheadThenAway(redis, RATE), upstream
    )
    try:
        async with transaction(sessions) as session:
            token, claimed = await claim_due_tasks(session, utc_now(), 30, limit=10)
        assert task_pk in claimed
        report = await poller.poll_batch([task_pk], token)
    finally:
        await deliveries.close()
        await upstream.aclose()
        await redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose

    # Nothing reached upstream, and the task is due again at once, its lease given back: not
    # held back as after a bug (poll.error), which it is not.
    assert report.calls == 0
    assert fresh_sim.control.calls(endpoint="task_result") == []
    [row] = (await tasks_of(sessions, client)).values()
    assert (row["state"], row["poll_count"], row["lease_token"]) == ("pending", 0, None)
    assert row["next_poll_at"] <= utc_now()
    assert not [r for r in caplog.records if r.getMessage() == "poll.error"]
