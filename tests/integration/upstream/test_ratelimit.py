"""The shared rate ceiling in real Redis: slot spacing, claim budget, slow-down, Retry-After."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from redis.asyncio import Redis

from service.upstream.ratelimit import (
    BACKGROUND_CLAIM_TOLERANCE_S,
    CLAIM_TOLERANCE_S,
    FACTOR_FLOOR,
    SAFETY_FACTOR,
    UpstreamRateLimiter,
)

pytestmark = pytest.mark.usefixtures("flush_redis")


async def test_one_reservation_spaces_its_slots_at_the_rate(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=100)
    slots = await limiter.reserve_calls(5)
    assert slots.first_in_s == pytest.approx(0, abs=0.01)
    assert slots.interval_s == pytest.approx(1 / (100 * SAFETY_FACTOR))
    assert len(slots.offsets()) == 5


async def test_concurrent_reservations_never_share_a_slot(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=50)
    loop = asyncio.get_running_loop()

    async def reserve(n: int) -> list[float]:
        slots = await limiter.reserve_calls(n)
        now = loop.time()
        return [now + offset for offset in slots.offsets()]

    results = await asyncio.gather(*(reserve(n) for n in (3, 7, 1, 10, 4)))
    times = sorted(t for slots in results for t in slots)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Each reservation learns its offsets from Redis time; a few ms of transit aside, slots are
    # one interval apart.
    assert min(gaps) >= 1 / (50 * SAFETY_FACTOR) - 0.005
    # 25 slots at 50/s take half a second: no second of them holds more than the ceiling.
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= 50


async def test_slots_follow_on_from_earlier_reservations(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=10)
    await limiter.reserve_calls(10)
    later = await limiter.reserve_calls(1)
    assert later.first_in_s == pytest.approx(10 / (10 * SAFETY_FACTOR), abs=0.02)


async def test_claim_budget_allows_a_short_burst_then_the_rate(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=100)
    first = await limiter.take_claims(10_000)
    assert first == pytest.approx(100 * SAFETY_FACTOR * CLAIM_TOLERANCE_S, abs=2)
    assert await limiter.take_claims(10_000) <= 1
    await asyncio.sleep(0.2)
    assert await limiter.take_claims(10_000) == pytest.approx(0.2 * 100 * SAFETY_FACTOR, abs=3)


async def test_background_claims_book_less_ahead_and_leave_polls_their_burst(
    redis_client: Redis,  # type: ignore[type-arg]
) -> None:
    limiter = UpstreamRateLimiter(redis_client, max_rps=100)
    background = await limiter.take_claims(10_000, background=True)
    assert background == pytest.approx(100 * SAFETY_FACTOR * BACKGROUND_CLAIM_TOLERANCE_S, abs=2)
    assert await limiter.take_claims(10_000, background=True) <= 1
    polls = await limiter.take_claims(10_000)
    assert polls == pytest.approx(
        100 * SAFETY_FACTOR * (CLAIM_TOLERANCE_S - BACKGROUND_CLAIM_TOLERANCE_S), abs=3
    )


async def test_interactive_calls_are_charged_to_what_background_claims_may_take(
    redis_client: Redis,  # type: ignore[type-arg]
) -> None:
    limiter = UpstreamRateLimiter(redis_client, max_rps=100)
    rate = 100 * SAFETY_FACTOR
    await limiter.charge_interactive(10)
    # Ten calls' worth of the background tolerance is taken: what is left goes to background.
    background = await limiter.take_claims(10_000, background=True)
    assert background == pytest.approx(rate * BACKGROUND_CLAIM_TOLERANCE_S - 10, abs=2)


async def test_a_background_tolerance_below_one_interval_still_allows_one_claim(
    redis_client: Redis,  # type: ignore[type-arg]
) -> None:
    limiter = UpstreamRateLimiter(redis_client, max_rps=2)
    assert await limiter.take_claims(10, background=True) == 1


async def test_unused_claims_can_be_given_back(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=100)
    granted = await limiter.take_claims(10_000)
    await limiter.return_claims(granted)
    assert await limiter.take_claims(10_000) == pytest.approx(granted, abs=2)


async def test_rate_limit_answer_halves_the_rate_once_per_cooldown(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=100)
    assert await limiter.slow_down() == pytest.approx(0.5, abs=0.01)
    # A whole batch of refusals arriving together counts once.
    assert await limiter.slow_down() == pytest.approx(0.5, abs=0.01)
    slots = await limiter.reserve_calls(2)
    assert slots.interval_s == pytest.approx(1 / (50 * SAFETY_FACTOR), rel=0.05)


async def test_slowed_rate_recovers_gradually(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=100, recovery_per_s=1.0)
    clock = asyncio.get_running_loop().time
    before = clock()
    await limiter.slow_down()
    slowed = clock()
    await asyncio.sleep(0.2)
    asked = clock()
    factor = (await limiter.status()).factor
    answered = clock()
    # From the 0.5 the slow-down left, 1.0 a second: by at least the time between the two answers,
    # at most the time between the two calls (bounds measured, since a busy machine stretches
    # the 0.2 s sleep).
    assert 0.5 + (asked - slowed) - 0.02 <= factor <= min(1.0, 0.5 + (answered - before) + 0.02)
    await asyncio.sleep(max(0.0, 0.6 - (clock() - slowed)))
    assert (await limiter.status()).factor == 1.0


async def test_rate_never_falls_below_the_floor(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=100, recovery_per_s=1e-9)
    for _ in range(12):
        await redis_client.hdel("phonebridge:ratelimit:factor", "d")  # skip the cooldown
        factor = await limiter.slow_down()
    assert factor == pytest.approx(FACTOR_FLOOR)


async def test_retry_after_blocks_every_reservation_and_claim(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=100)
    await limiter.block_for(2.0)
    assert (await limiter.status()).blocked_for_s == pytest.approx(2.0, abs=0.05)
    slots = await limiter.reserve_calls(1)
    assert slots.first_in_s == pytest.approx(2.0, abs=0.05)
    assert await limiter.take_claims(100) == 0
    await limiter.block_for(0.5)  # a shorter Retry-After does not cut the block short
    assert (await limiter.status()).blocked_for_s > 1.5


async def test_flushed_redis_restarts_the_limiter_clean(redis_client: Redis) -> None:  # type: ignore[type-arg]
    limiter = UpstreamRateLimiter(redis_client, max_rps=10)
    await limiter.slow_down()
    await limiter.block_for(60)
    await limiter.reserve_calls(100)
    await redis_client.flushdb()
    status = await limiter.status()
    assert (status.blocked_for_s, status.factor) == (0.0, 1.0)
    assert (await limiter.reserve_calls(1)).first_in_s == pytest.approx(0, abs=0.01)
