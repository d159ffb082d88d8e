"""Paced subscriptions' timelines of turns in Redis (service/webhooks/pacing.py): turns taken by
two workers never overlap, a new pace starts a fresh timeline, and a batch's paced deliveries
are placed in the worker, in their rows, or nowhere when Redis does not answer."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.domain.pacing import HOLD_S, TURN_LEAD_S, turn_interval_s
from service.run.processes import free_port
from service.store.deliveries import LeasedPace
from service.webhooks.pacing import SubscriptionPace, place_turns

INTERVAL_S = 0.05


@pytest.fixture
async def second_redis(redis_url: str) -> AsyncIterator[Redis[Any]]:
    """Another worker's Redis client."""
    client: Redis[Any] = Redis.from_url(redis_url)
    yield client
    await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


def a_subscription() -> int:
    return secrets.randbelow(2**40) + 1_000_000


async def test_turns_two_workers_take_at_once_never_overlap(
    redis_client: Redis[Any], second_redis: Redis[Any]
) -> None:
    workers = [SubscriptionPace(redis_client), SubscriptionPace(second_redis)]
    subscription = a_subscription()
    loop = asyncio.get_running_loop()

    async def take(pace: SubscriptionPace) -> list[float]:
        first_in_s = await pace.reserve_turns(subscription, 0, INTERVAL_S, 3)
        answered = loop.time()
        return [answered + first_in_s + i * INTERVAL_S for i in range(3)]

    taken = await asyncio.gather(*(take(workers[i % 2]) for i in range(20)))
    turns = sorted(turn for batch in taken for turn in batch)
    gaps = [later - earlier for earlier, later in itertools.pairwise(turns)]
    # Each answer is placed when it arrived, up to one round trip late: a few milliseconds.
    assert min(gaps) > INTERVAL_S - 0.01
    assert turns[-1] - turns[0] >= (len(turns) - 1) * INTERVAL_S - 0.01


async def test_a_new_pace_starts_a_fresh_timeline(redis_client: Redis[Any]) -> None:
    pace = SubscriptionPace(redis_client)
    subscription = a_subscription()
    await pace.reserve_turns(subscription, 0, 1.0, 100)  # the old pace: a hundred seconds queued
    assert await pace.reserve_turns(subscription, 0, 1.0, 1) > 99
    assert await pace.reserve_turns(subscription, 1, 0.1, 1, lead_s=0) == pytest.approx(0, abs=0.01)


async def test_a_new_turn_is_at_least_the_lead_ahead(redis_client: Redis[Any]) -> None:
    pace = SubscriptionPace(redis_client)
    first = await pace.reserve_turns(a_subscription(), 0, 0.1, 1)
    assert first == pytest.approx(TURN_LEAD_S, abs=0.01)


async def test_a_batch_is_placed_near_turns_in_the_worker_far_ones_in_their_rows(
    redis_client: Redis[Any],
) -> None:
    pace = SubscriptionPace(redis_client)
    paced, unpaced = a_subscription(), a_subscription()
    now = datetime.now(UTC)
    held_turn = now + timedelta(seconds=1)
    far_turn = now + timedelta(seconds=HOLD_S + 60)
    leased = {
        1: LeasedPace(unpaced),
        **{i: LeasedPace(paced, max_rps=2) for i in range(2, 12)},
        12: LeasedPace(paced, max_rps=2, turn_at=held_turn),
        13: LeasedPace(paced, max_rps=2, turn_at=far_turn),
    }

    placement = await place_turns(pace, leased, sorted(leased), lambda: datetime.now(UTC))

    interval = timedelta(seconds=turn_interval_s(2))
    assert 1 not in placement.send_at
    assert placement.send_at[12] == held_turn
    # Two a second with the margin: turns 0.2, 0.75, 1.3, 1.85 s are near; the rest wait in rows.
    near = sorted(i for i in placement.send_at if i != 12)
    assert near == [2, 3, 4, 5]
    waiting = {row_id: (turn, due) for row_id, turn, due in placement.in_rows}
    assert sorted(waiting) == [6, 7, 8, 9, 10, 11, 13]
    assert waiting[13] == (far_turn, far_turn - timedelta(seconds=HOLD_S))
    turns = [placement.send_at[i] for i in near] + [waiting[i][0] for i in range(6, 12)]
    assert all(later - earlier == interval for earlier, later in itertools.pairwise(turns))
    for turn, due in waiting.values():
        assert due == turn - timedelta(seconds=HOLD_S)
    assert placement.unplaced == []


async def test_without_redis_no_paced_delivery_is_placed_and_none_goes_unpaced() -> None:
    unreachable: Redis[Any] = Redis(
        host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), retries=0)
    )
    try:
        pace = SubscriptionPace(unreachable)
        paced, unpaced = a_subscription(), a_subscription()
        leased = {1: LeasedPace(unpaced), 2: LeasedPace(paced, max_rps=5)}
        placement = await place_turns(pace, leased, [1, 2], lambda: datetime.now(UTC))
    finally:
        await unreachable.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
    assert (placement.send_at, placement.in_rows, placement.unplaced) == ({}, [], [2])
