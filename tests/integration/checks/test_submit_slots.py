"""An interactive submit at its slot of the rate ceiling (service/checks/submit_slot.py), against
the simulator, with the calls timeline booked ahead by other processes, on an API whose event
loop is starved right after Redis grants the slot: the call would reach the wire too late, so
nothing of it is sent and it takes a new slot; an API starved at every slot answers 503
RATE_CEILING with nothing sent and the key freed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.app import create_app
from service.api.resources import ApiResources
from service.checks.submit import SubmitService
from service.checks.submit_slot import SLOT_ATTEMPTS
from service.config import Settings
from service.sim.server import SimServer
from service.upstream.gate import UpstreamGate
from service.upstream.ratelimit import MAX_LATENESS_S, SlotReservation, UpstreamRateLimiter
from service.upstream.reaction import UpstreamReaction
from tests.support.checks import check_request, checks_settings, submit_calls
from tests.support.factories import insert_client

pytestmark = pytest.mark.usefixtures("flush_redis")


# Slots booked ahead of each of the check's: two intervals at the default ceiling (50 calls/s).
BOOKED_AHEAD = 2


class StarvedAfterReservations(UpstreamRateLimiter):
    """The real limiter, but the loop is blocked (the process starved) just after Redis answers
    each of the first `starved` reservations, past what a slot may be late."""

    def __init__(self, redis: Any, max_rps: float, starved: int) -> None:
        super().__init__(redis, max_rps)
        self.others = UpstreamRateLimiter(redis, max_rps)
        self.starved = starved
        self.reservations = 0

    async def reserve_calls(self, count: int) -> SlotReservation:
        # Another process books the next slots first: the fleet is at the ceiling, and the
        # check's slot more than MAX_LATENESS_S ahead (its call is held to its last moment).
        await self.others.reserve_calls(BOOKED_AHEAD)
        reservation = await super().reserve_calls(count)
        self.reservations += 1
        if self.reservations <= self.starved:
            time.sleep(2 * MAX_LATENESS_S)  # blocking the loop is the point
        return reservation


@asynccontextmanager
async def starved_submits(
    settings: Settings, starved: int
) -> AsyncIterator[tuple[SubmitService, StarvedAfterReservations]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        resources: ApiResources = app.state.resources
        limiter = StarvedAfterReservations(resources.redis, settings.upstream_max_rps, starved)
        reaction = UpstreamReaction(
            resources.redis,
            limiter,
            UpstreamGate(resources.redis, limiter),
            pause_probe_s=settings.pause_probe_s,
        )
        service = SubmitService(
            settings, resources.sessions, resources.redis, resources.callbacks, reaction
        )
        try:
            yield service, limiter
        finally:
            await service.close()


async def test_a_submit_starved_past_its_slot_sends_nothing_and_takes_a_new_one(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    client_id = await insert_client(sessions)
    settings = checks_settings(database_url, redis_url, fresh_sim.base_url)
    async with starved_submits(settings, starved=1) as (svc, limiter):
        answer = await svc.submit(client_id, check_request(), "order-late-once")

    assert answer.status == 201, answer.body_json
    assert limiter.reservations == 2
    # The first slot's call never reached upstream: one submit in all.
    assert submit_calls(fresh_sim) == 1


async def test_a_submit_starved_at_every_slot_answers_503_with_nothing_sent(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    settings = checks_settings(database_url, redis_url, fresh_sim.base_url)
    async with starved_submits(settings, starved=SLOT_ATTEMPTS) as (svc, limiter):
        refused = await svc.submit(client_id, check_request(), "order-always-late")
        limiter.starved = 0
        # The key was freed: the same request is submitted again, not replayed.
        again = await svc.submit(client_id, check_request(), "order-always-late")

    assert refused.status == 503
    assert orjson.loads(refused.body_json)["code"] == "RATE_CEILING"
    assert refused.headers["Retry-After"] == "1"
    assert limiter.reservations == SLOT_ATTEMPTS + 1
    assert not again.replayed
    assert submit_calls(fresh_sim) == 1
