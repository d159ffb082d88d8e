"""The shared ceiling on upstream calls, summed over every worker and scheduler: Redis, atomic.

Calls: GCRA with zero burst tolerance. Each reservation atomically takes the next `n` slots of one
shared timeline spaced `1 / effective rate` apart (Redis TIME is the clock, a Lua script the lock);
a worker reserves its batch's slots in one call and sleeps until each slot. Slots never overlap
between workers, so calls are spaced at least one interval apart. Two margins make "never more
than the ceiling in any sliding second" hold in practice: the timeline runs slightly below the
ceiling (SAFETY_FACTOR), and a call that starts later than MAX_LATENESS_S after the earliest its
slot can be (a slot is known only to within the reservation's round trip) does not use it (it
takes a fresh one, service/engine/slots.py), so a busy event loop cannot bunch late calls
together.

Claims: the scheduler takes claim budget from a second GCRA timeline at the same rate, with a short
burst tolerance, so a backlog is claimed (and leased) only as fast as it can be polled instead of
flooding the broker with messages whose leases run out in a queue.

Interactive first: background claims (check job items, re-checks) book at most
BACKGROUND_CLAIM_TOLERANCE_S ahead, after the tick's due polls, and interactive submits are
charged to the claims timeline as they reserve their call: a job at the full ceiling leaves a
single check its slot within about a second, and due polls their schedule.

Adaptation: RATE_LIMIT_EXCEEDED lowers the effective rate in proportion to the share of calls
refused lately, by half at most (service/domain/refusals.py; at most once per
DECREASE_COOLDOWN_S, so one batch of refusals counts once, never below FACTOR_FLOOR); it recovers
additively, RECOVERY_PER_S of the ceiling per second. A Retry-After stops every reservation until
then. All of it lives in keys with expiry: after a FLUSHALL the limiter simply starts clean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

KEY_PREFIX: Final = "phonebridge:ratelimit:"
CALLS_KEY: Final = KEY_PREFIX + "calls"
CLAIMS_KEY: Final = KEY_PREFIX + "claims"
FACTOR_KEY: Final = KEY_PREFIX + "factor"
BLOCKED_KEY: Final = KEY_PREFIX + "blocked_until"

SAFETY_FACTOR: Final = 0.95
MAX_LATENESS_S: Final = 0.025
FACTOR_FLOOR: Final = 0.05
DECREASE_MULTIPLIER: Final = 0.5
DECREASE_COOLDOWN_S: Final = 1.0
RECOVERY_PER_S: Final = 0.02
CLAIM_TOLERANCE_S: Final = 1.0
# How far ahead background claims (check job items, re-checks) may book the claims timeline.
BACKGROUND_CLAIM_TOLERANCE_S: Final = 0.4

# The current adaptive factor, recovered lazily from the last change; shared by every script.
_FACTOR_LUA = """
local function current_factor(now, key, recovery_per_s)
  local f = redis.call('HGET', key, 'f')
  local t = redis.call('HGET', key, 't')
  if not f or not t then return 1 end
  f = tonumber(f) + recovery_per_s * math.max(0, now - tonumber(t)) / 1000000
  if f > 1 then f = 1 end
  return f
end
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# KEYS: calls, factor, blocked_until. ARGV: rate, n, recovery_per_s.
# Returns {microseconds from now to the first slot, microseconds between slots}.
_RESERVE_LUA = (
    _FACTOR_LUA
    + """
local now = redis_now()
local rate = tonumber(ARGV[1]) * current_factor(now, KEYS[2], tonumber(ARGV[3]))
local n = tonumber(ARGV[2])
local interval = 1000000 / rate
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now,
                       tonumber(redis.call('GET', KEYS[3]) or '0'))
local tat = start + n * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat),
           'PX', math.ceil((tat - now) / 1000) + 1000)
return {string.format('%.0f', start - now), string.format('%.3f', interval)}
"""
)

# KEYS: claims, factor, blocked_until. ARGV: rate, wanted, tolerance_s, recovery_per_s.
# Returns how many claims may be made now (0..wanted).
_TAKE_CLAIMS_LUA = (
    _FACTOR_LUA
    + """
local now = redis_now()
if tonumber(redis.call('GET', KEYS[3]) or '0') > now then return 0 end
local rate = tonumber(ARGV[1]) * current_factor(now, KEYS[2], tonumber(ARGV[4]))
local interval = 1000000 / rate
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
-- A tolerance shorter than one interval (background claims at a low ceiling) still allows one.
local tolerance = math.max(tonumber(ARGV[3]) * 1000000, interval)
-- now - start first: both are whole microseconds near 1e15, exact; adding the tolerance to now
-- first lost a fraction, and a tolerance of exactly one interval allowed none.
local allowed = math.floor((now - start + tolerance) / interval)
local k = math.min(tonumber(ARGV[2]), allowed)
if k <= 0 then return 0 end
local tat = start + k * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat),
           'PX', math.ceil((tat - now) / 1000) + 1000)
return k
"""
)

# KEYS: claims, factor. ARGV: rate, n, recovery_per_s. Charges `n` calls made without a claim
# (interactive submits) to the claims timeline, beyond its tolerance if need be: the claims after
# them wait that much longer, so what is claimed plus what is charged stays within the rate.
_CHARGE_CLAIMS_LUA = (
    _FACTOR_LUA
    + """
local now = redis_now()
local rate = tonumber(ARGV[1]) * current_factor(now, KEYS[2], tonumber(ARGV[3]))
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local tat = start + tonumber(ARGV[2]) * 1000000 / rate
redis.call('SET', KEYS[1], string.format('%.0f', tat),
           'PX', math.ceil((tat - now) / 1000) + 1000)
return 1
"""
)

# KEYS: claims, factor. ARGV: rate, unused, recovery_per_s. Hands back claims not made.
_RETURN_CLAIMS_LUA = (
    _FACTOR_LUA
    + """
local now = redis_now()
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat <= now then return 0 end
local rate = tonumber(ARGV[1]) * current_factor(now, KEYS[2], tonumber(ARGV[3]))
tat = math.max(now, tat - tonumber(ARGV[2]) * 1000000 / rate)
redis.call('SET', KEYS[1], string.format('%.0f', tat),
           'PX', math.ceil((tat - now) / 1000) + 1000)
return 1
"""
)

# KEYS: factor. ARGV: multiplier, floor, cooldown_s, recovery_per_s. Returns the new factor.
_SLOW_DOWN_LUA = (
    _FACTOR_LUA
    + """
local now = redis_now()
local f = current_factor(now, KEYS[1], tonumber(ARGV[4]))
local last = tonumber(redis.call('HGET', KEYS[1], 'd') or '0')
if now - last >= tonumber(ARGV[3]) * 1000000 then
  f = math.max(tonumber(ARGV[2]), f * tonumber(ARGV[1]))
  redis.call('HSET', KEYS[1], 'd', string.format('%.0f', now))
end
redis.call('HSET', KEYS[1], 'f', string.format('%.6f', f), 't', string.format('%.0f', now))
-- Once fully recovered the key means nothing; let it go.
redis.call('PEXPIRE', KEYS[1], math.ceil((1 - f) / tonumber(ARGV[4]) * 1000) + 1000)
return string.format('%.6f', f)
"""
)

# KEYS: blocked_until. ARGV: seconds. Blocks every reservation for that long (never shortens).
_BLOCK_LUA = (
    _FACTOR_LUA
    + """
local now = redis_now()
local untl = now + tonumber(ARGV[1]) * 1000000
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > current then
  redis.call('SET', KEYS[1], string.format('%.0f', untl),
             'PX', math.ceil((untl - now) / 1000) + 1)
end
return 1
"""
)

# KEYS: blocked_until, factor. ARGV: recovery_per_s.
# Returns {microseconds until the block ends (0 when none), current factor}.
_STATUS_LUA = (
    _FACTOR_LUA
    + """
local now = redis_now()
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0') - now
if blocked < 0 then blocked = 0 end
return {string.format('%.0f', blocked),
        string.format('%.6f', current_factor(now, KEYS[2], tonumber(ARGV[1])))}
"""
)


@dataclass(frozen=True)
class SlotReservation:
    """`count` call slots: the first `first_in_s` seconds from now, then every `interval_s`."""

    count: int
    first_in_s: float
    interval_s: float

    def offsets(self) -> list[float]:
        return [self.first_in_s + i * self.interval_s for i in range(self.count)]


@dataclass(frozen=True)
class LimiterStatus:
    blocked_for_s: float
    factor: float


class UpstreamRateLimiter:
    """The shared upstream call budget. `max_rps` is PHONEBRIDGE_UPSTREAM_MAX_RPS."""

    def __init__(
        self,
        redis: Redis[Any],
        max_rps: float,
        *,
        recovery_per_s: float = RECOVERY_PER_S,
        claim_tolerance_s: float = CLAIM_TOLERANCE_S,
    ) -> None:
        self._redis = redis
        self.max_rps = max_rps
        self._rate = max_rps * SAFETY_FACTOR
        self._recovery_per_s = recovery_per_s
        self._claim_tolerance_s = claim_tolerance_s
        self._reserve = redis.register_script(_RESERVE_LUA)
        self._take_claims = redis.register_script(_TAKE_CLAIMS_LUA)
        self._return_claims = redis.register_script(_RETURN_CLAIMS_LUA)
        self._charge_claims = redis.register_script(_CHARGE_CLAIMS_LUA)
        self._slow_down = redis.register_script(_SLOW_DOWN_LUA)
        self._block = redis.register_script(_BLOCK_LUA)
        self._status = redis.register_script(_STATUS_LUA)

    async def reserve_calls(self, count: int) -> SlotReservation:
        """Take the next `count` call slots of the shared timeline."""
        if count <= 0:
            return SlotReservation(0, 0.0, 0.0)
        first_us, interval_us = await self._reserve(
            keys=[CALLS_KEY, FACTOR_KEY, BLOCKED_KEY],
            args=[repr(self._rate), count, repr(self._recovery_per_s)],
        )
        return SlotReservation(count, float(first_us) / 1e6, float(interval_us) / 1e6)

    async def take_claims(self, wanted: int, *, background: bool = False) -> int:
        """How many tasks the scheduler may claim now (0..wanted); the rest waits for later.

        `background` (check job items and re-checks): only while the claims timeline is less
        than BACKGROUND_CLAIM_TOLERANCE_S ahead, instead of CLAIM_TOLERANCE_S. Background work
        takes what due polls (claimed first, each tick) and interactive submits (charged,
        `charge_interactive`) leave, and never books the calls of the next second: a single
        check's slot, reserved behind it, comes within about that long."""
        if wanted <= 0:
            return 0
        tolerance_s = (
            min(BACKGROUND_CLAIM_TOLERANCE_S, self._claim_tolerance_s)
            if background
            else self._claim_tolerance_s
        )
        granted = await self._take_claims(
            keys=[CLAIMS_KEY, FACTOR_KEY, BLOCKED_KEY],
            args=[
                repr(self._rate),
                wanted,
                repr(tolerance_s),
                repr(self._recovery_per_s),
            ],
        )
        return int(granted)

    async def charge_interactive(self, calls: int = 1) -> None:
        """Interactive calls (a `POST /v1/checks`) reserve their slots directly; charged to the
        claims timeline too, so that background claims yield them the same share of the
        ceiling: the reserve that recent interactive use sets."""
        if calls > 0:
            await self._charge_claims(
                keys=[CLAIMS_KEY, FACTOR_KEY],
                args=[repr(self._rate), calls, repr(self._recovery_per_s)],
            )

    async def return_claims(self, unused: int) -> None:
        """Give back claim budget that found nothing due, so the next tick may use it."""
        if unused > 0:
            await self._return_claims(
                keys=[CLAIMS_KEY, FACTOR_KEY],
                args=[repr(self._rate), unused, repr(self._recovery_per_s)],
            )

    async def slow_down(self, multiplier: float = DECREASE_MULTIPLIER) -> float:
        """Upstream said RATE_LIMIT_EXCEEDED: multiply the shared rate by `multiplier` (at most
        once per DECREASE_COOLDOWN_S, across every process); returns the new factor. Polls and
        submits pass the share of calls refused lately (service/upstream/reaction.py)."""
        factor = await self._slow_down(
            keys=[FACTOR_KEY],
            args=[
                repr(multiplier),
                repr(FACTOR_FLOOR),
                repr(DECREASE_COOLDOWN_S),
                repr(self._recovery_per_s),
            ],
        )
        return float(factor)

    async def block_for(self, seconds: float) -> None:
        """Upstream sent Retry-After: no call slot starts before then."""
        if seconds > 0 and math.isfinite(seconds):
            await self._block(keys=[BLOCKED_KEY], args=[repr(seconds)])

    async def status(self) -> LimiterStatus:
        blocked_us, factor = await self._status(
            keys=[BLOCKED_KEY, FACTOR_KEY], args=[repr(self._recovery_per_s)]
        )
        return LimiterStatus(float(blocked_us) / 1e6, float(factor))
