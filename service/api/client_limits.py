"""Per-client intake limits, counted in Redis so they hold across every API process, with an
in-process fallback so that intake never waits on, or fails for, a Redis that is down.

- Calls: one counter per client and one-second window (created with a 2 s expiry, then INCR),
  judged by service.domain.client_limits. Every /v1 call counts.
- Pending tasks: a counter per client, recounted from PostgreSQL when it is missing and kept for
  PENDING_RECOUNT_S; registrations reserve room in it atomically (a Lua script) before inserting
  and hand back what they did not create. Tasks that finish are seen at the next recount, so the
  count errs high for at most that long: a client may wait a few seconds longer than needed, and
  is never let past its limit.
- Fallback: after a Redis error the process counts on its own for REDIS_RETRY_S (each process
  then applies the whole limit by itself) and tries Redis again after that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.domain.client_limits import RateVerdict, judge_rate, pending_room, window_of

log = logging.getLogger(__name__)

KEY_PREFIX: Final = "phonebridge:client:"
PENDING_RECOUNT_S: Final = 5
REDIS_RETRY_S: Final = 5.0

# KEYS: the client's pending counter. ARGV: tasks wanted, limit.
# Returns -1 when the counter must be recounted first, else the room that was left before this
# reservation (the reservation is made only when all of it fits).
_RESERVE_PENDING_LUA = """
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
local room = tonumber(ARGV[2]) - tonumber(current)
if room < 0 then room = 0 end
if tonumber(ARGV[1]) <= room then redis.call('INCRBY', KEYS[1], ARGV[1]) end
return room
"""

# KEYS: the counter. ARGV: how many to give back. Only while the counter exists.
_RELEASE_PENDING_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECRBY', KEYS[1], ARGV[1]) end
return 0
"""

PendingCounter = Callable[[int], Awaitable[int]]


class ClientLimiter:
    def __init__(self, redis: Redis[Any], *, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock
        self._monotonic = time.monotonic
        self._reserve = redis.register_script(_RESERVE_PENDING_LUA)
        self._release = redis.register_script(_RELEASE_PENDING_LUA)
        self._redis_retry_at = 0.0
        # The fallback's counters: (client, window) -> calls; client -> (pending, recount at).
        self._local_calls: dict[tuple[int, int], int] = {}
        self._local_pending: dict[int, tuple[int, float]] = {}

    # --- calls per second ------------------------------------------------------------------
    async def count_call(self, client_id: int, limit: int) -> RateVerdict:
        now = self._clock()
        window = window_of(now)
        count = await self._redis_or_local(
            lambda: self._count_in_redis(client_id, window),
            lambda: self._count_locally(client_id, window),
        )
        return judge_rate(limit, count, now)

    async def _count_in_redis(self, client_id: int, window: int) -> int:
        key = f"{KEY_PREFIX}{client_id}:calls:{window}"
        # SET NX EX, then INCR (which keeps the expiry): one round trip, and unlike EXPIRE NX it
        # works on Redis 6 too (the embedded server of `up` and `demo`).
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(key, 0, ex=2, nx=True)
            pipe.incr(key)
            _, count = await pipe.execute()
        return int(count)

    async def _count_locally(self, client_id: int, window: int) -> int:
        if len(self._local_calls) > 10_000:
            self._local_calls = {k: v for k, v in self._local_calls.items() if k[1] >= window}
        key = (client_id, window)
        self._local_calls[key] = self._local_calls.get(key, 0) + 1
        return self._local_calls[key]

    # --- pending tasks ---------------------------------------------------------------------
    async def reserve_pending(
        self, client_id: int, wanted: int, limit: int, recount: PendingCounter
    ) -> int:
        """Reserve room for `wanted` new pending tasks; returns the room there was before (the
        reservation is made only when `wanted` fits, which the caller checks against it)."""

        async def in_redis() -> int:
            key = f"{KEY_PREFIX}{client_id}:pending"
            room = int(await self._reserve(keys=[key], args=[wanted, limit]))
            if room < 0:
                pending = await recount(client_id)
                await self._redis.set(key, pending, ex=PENDING_RECOUNT_S, nx=True)
                room = int(await self._reserve(keys=[key], args=[wanted, limit]))
            return max(0, room)

        async def locally() -> int:
            pending, recount_at = self._local_pending.get(client_id, (0, 0.0))
            if self._monotonic() >= recount_at:
                pending = await recount(client_id)
                recount_at = self._monotonic() + PENDING_RECOUNT_S
            room = pending_room(limit, pending)
            if wanted <= room:
                pending += wanted
            self._local_pending[client_id] = (pending, recount_at)
            return room

        return await self._redis_or_local(in_redis, locally)

    async def peek_pending(self, client_id: int, recount: PendingCounter) -> int:
        """The client's pending count as the limiter knows it (for the headers of calls that do
        not register tasks)."""

        async def in_redis() -> int:
            key = f"{KEY_PREFIX}{client_id}:pending"
            current = await self._redis.get(key)
            if current is not None:
                return int(current)
            pending = await recount(client_id)
            await self._redis.set(key, pending, ex=PENDING_RECOUNT_S, nx=True)
            return pending

        async def locally() -> int:
            pending, recount_at = self._local_pending.get(client_id, (0, 0.0))
            if self._monotonic() >= recount_at:
                pending = await recount(client_id)
                self._local_pending[client_id] = (pending, self._monotonic() + PENDING_RECOUNT_S)
            return pending

        return await self._redis_or_local(in_redis, locally)

    async def release_pending(self, client_id: int, unused: int) -> None:
        """Hand back reserved room that registration did not use (existing or rejected
        entries)."""
        if unused <= 0:
            return

        async def in_redis() -> int:
            await self._release(keys=[f"{KEY_PREFIX}{client_id}:pending"], args=[unused])
            return 0

        async def locally() -> int:
            if client_id in self._local_pending:
                pending, recount_at = self._local_pending[client_id]
                self._local_pending[client_id] = (max(0, pending - unused), recount_at)
            return 0

        await self._redis_or_local(in_redis, locally)

    # --- Redis, or this process alone -------------------------------------------------------
    async def _redis_or_local(
        self, in_redis: Callable[[], Awaitable[int]], locally: Callable[[], Awaitable[int]]
    ) -> int:
        if self._monotonic() >= self._redis_retry_at:
            try:
                return await in_redis()
            except (RedisError, OSError) as error:
                self._redis_retry_at = self._monotonic() + REDIS_RETRY_S
                # At most once per REDIS_RETRY_S: the next try is that far away.
                log.warning(
                    "limits.redis_unavailable",
                    extra={
                        "error_type": type(error).__name__,
                        "detail": "counting in this process until Redis answers",
                    },
                )
        return await locally()


class RateLimitHeaders:
    """Pure ASGI middleware: puts the RateLimit headers that `admit` (service/api/auth.py) left
    in the request's state on the answer, whichever route or error handler produced it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state") or {}
                extra = state.get("ratelimit_headers")
                if extra:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    message["headers"] = list(message.get("headers", [])) + [
                        (name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in extra.items()
                        if name.lower().encode("latin-1") not in present
                    ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
