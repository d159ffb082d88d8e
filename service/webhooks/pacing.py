"""Each paced subscription's timeline of turns, shared by every worker: Redis, atomic.

The model is the upstream call ceiling (service/upstream/ratelimit.py): GCRA with no burst. A
reservation atomically takes the next `n` turns of the subscription's timeline, spaced
`turn_interval_s(max_rps)` apart (service/domain/pacing.py), with Redis TIME as the clock and a
Lua script as the lock, so turns of two workers never overlap. The answer is the first turn on
Redis's clock, which each worker maps to its own (`RedisClock`: the offset measured over the
quickest of a few round trips, every half minute), whatever the skew between machines. Unlike an
answer relative to "now", that does not make every turn of a reservation late by its round trip:
on a loaded machine a slow answer had one worker's turns land on the next worker's.

The key names the subscription and its `pace_epoch`, which moves on with each change of its
max_rps: a new pace starts a fresh timeline instead of queueing behind the old one's turns. Keys
expire when their last turn has passed. After a FLUSHALL a timeline starts clean: deliveries
waiting in their rows keep the turns they hold, and new turns may fall beside them until they
are sent (at most twice the pace, for as long as the turns already handed out last).

`place_turns` decides, for a batch a worker takes on, which deliveries of paced subscriptions
wait for their turn in the worker, which go back to their rows holding a turn further off, and
which could not get one (Redis did not answer: they are handed back for a moment, never sent
unpaced).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from redis.asyncio import Redis

from service.clock import Clock
from service.domain.pacing import (
    TURN_LEAD_S,
    SendAtTurn,
    TakeTurn,
    TurnPlace,
    WaitInRow,
    place_turn,
    turn_interval_s,
    turns_from,
)
from service.store.deliveries import LeasedPace

log = logging.getLogger(__name__)

KEY_PREFIX: Final = "phonebridge:webhook_pace:"

# KEYS: the timeline. ARGV: microseconds between turns, n, microseconds of lead.
# Returns the first of the n turns taken (at least the lead from now), in microseconds of TIME.
_RESERVE_TURNS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now + tonumber(ARGV[3]))
local tat = start + tonumber(ARGV[2]) * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat),
           'PX', math.ceil((tat - now) / 1000) + 1000)
return string.format('%.0f', start)
"""

# Round trips whose quickest gives Redis's clock, and how long that measure is kept.
CLOCK_SAMPLES: Final = 5
CLOCK_REFRESH_S: Final = 30.0


class RedisClock:
    """Redis's clock (TIME) as this process sees it: its offset from `time.time()`, measured
    over the quickest of a few round trips (off by at most half of it)."""

    def __init__(self, redis: Redis[Any]) -> None:
        self._redis = redis
        self._offset_s: float | None = None
        self._measured_at = 0.0

    async def seconds_until(self, redis_us: int) -> float:
        """How far from now (this process's clock) a moment of Redis's clock is."""
        if self._offset_s is None or time.monotonic() - self._measured_at > CLOCK_REFRESH_S:
            self._offset_s = await self._measure()
            self._measured_at = time.monotonic()
        return redis_us / 1e6 - (time.time() + self._offset_s)

    async def _measure(self) -> float:
        quickest: tuple[float, float] | None = None
        for _ in range(CLOCK_SAMPLES):
            sent = time.time()
            seconds, micros = await self._redis.time()
            received = time.time()
            sample = (received - sent, seconds + micros / 1e6 - (sent + received) / 2)
            if quickest is None or sample[0] < quickest[0]:
                quickest = sample
        assert quickest is not None
        return quickest[1]


def timeline_key(subscription_pk: int, pace_epoch: int) -> str:
    return f"{KEY_PREFIX}{subscription_pk}:{pace_epoch}"


class SubscriptionPace:
    """The turns of paced subscriptions, on the Redis every worker shares."""

    def __init__(self, redis: Redis[Any]) -> None:
        self._reserve = redis.register_script(_RESERVE_TURNS_LUA)
        self._clock = RedisClock(redis)

    async def reserve_turns(
        self,
        subscription_pk: int,
        pace_epoch: int,
        interval_s: float,
        count: int,
        lead_s: float = TURN_LEAD_S,
    ) -> float:
        """Take the next `count` turns of the subscription's timeline, `interval_s` apart and the
        first at least `lead_s` from now; returns how far from now the first one is."""
        first_us = await self._reserve(
            keys=[timeline_key(subscription_pk, pace_epoch)],
            args=[repr(interval_s * 1e6), count, repr(lead_s * 1e6)],
        )
        return await self._clock.seconds_until(int(first_us))


@dataclass
class TurnPlacement:
    """Where each paced delivery of a batch waits for its turn."""

    # Sent by this worker at its turn.
    send_at: dict[int, datetime] = field(default_factory=dict)
    # Back to its row: (id, turn_at, due_at).
    in_rows: list[tuple[int, datetime, datetime]] = field(default_factory=list)
    # No turn could be had: handed back for a moment.
    unplaced: list[int] = field(default_factory=list)

    @property
    def leaving(self) -> list[int]:
        """The deliveries this worker does not send now."""
        return [row_id for row_id, _, _ in self.in_rows] + self.unplaced


async def place_turns(
    pace: SubscriptionPace, leased: dict[int, LeasedPace], taken: Sequence[int], clock: Clock
) -> TurnPlacement:
    """Where each delivery of `taken` whose subscription is paced waits for its turn: the turn
    it holds when that is still good, else the next ones of its subscription's timeline, taken
    together for each subscription of the batch. Unpaced deliveries are not placed."""
    placement = TurnPlacement()
    wanting: dict[tuple[int, int, int], list[int]] = {}
    now = clock()
    for delivery_id in taken:
        paced = leased[delivery_id]
        if paced.max_rps is None:
            continue
        held = place_turn(paced.turn_at, now)
        if isinstance(held, TakeTurn):
            key = (paced.subscription_pk, paced.pace_epoch, paced.max_rps)
            wanting.setdefault(key, []).append(delivery_id)
        else:
            _place(placement, delivery_id, held)
    for (subscription_pk, epoch, max_rps), ids in wanting.items():
        interval_s = turn_interval_s(max_rps)
        try:
            first_in_s = await pace.reserve_turns(subscription_pk, epoch, interval_s, len(ids))
        except Exception as error:
            log.warning(
                "webhook.no_turn",
                extra={"deliveries": len(ids), "error_type": type(error).__name__},
            )
            placement.unplaced.extend(ids)
            continue
        now = clock()
        for delivery_id, turn_at in zip(
            ids, turns_from(now + timedelta(seconds=first_in_s), interval_s, len(ids)), strict=True
        ):
            _place(placement, delivery_id, place_turn(turn_at, now))
    return placement


def _place(placement: TurnPlacement, delivery_id: int, place: TurnPlace) -> None:
    if isinstance(place, SendAtTurn):
        placement.send_at[delivery_id] = place.at
    elif isinstance(place, WaitInRow):
        placement.in_rows.append((delivery_id, place.turn_at, place.due_at))
    else:  # a turn just taken is never missed; keep it from being sent unpaced all the same
        placement.unplaced.append(delivery_id)
