"""Failed sign-ins per source address: every API key presented on the API or the portal that is
not a valid key counts against its connection's address, and past the limit in a window of
WINDOW_S (PHONEBRIDGE_SIGN_IN_FAILURES_PER_MINUTE, 20) the address is refused (429 with
Retry-After) until the window ends, before its key is even looked at, so a guesser learns nothing
more. Counted in Redis, shared by every API process.

The address is the connection's peer (forwarded headers are not applied; see README, "Behind a
proxy"): behind a proxy every client shares the proxy's address and so its allowance. Without
Redis nothing is refused: signing in matters more than throttling it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.logs import OncePerInterval

WINDOW_S = 60
KEY_PREFIX = "phonebridge:sign-in-failures:"

log = logging.getLogger(__name__)
# While Redis is down every sign-in would say so: once a minute is enough.
log.addFilter(OncePerInterval(60.0))


class SignInThrottle:
    def __init__(
        self, redis: Redis[Any], limit: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self._limit = limit  # 0: no limit
        self._clock = clock

    async def retry_after(self, source: str) -> int | None:
        """Seconds until `source` may present a key again; None when it may now."""
        if self._limit <= 0:
            return None
        now = self._clock()
        window = int(now // WINDOW_S)
        try:
            failures = await self._redis.get(f"{KEY_PREFIX}{source}:{window}")
        except RedisError as error:
            self._redis_unavailable(error)
            return None
        if failures is None or int(failures) < self._limit:
            return None
        return max(1, math.ceil((window + 1) * WINDOW_S - now))

    async def count_failure(self, source: str) -> None:
        if self._limit <= 0:
            return
        key = f"{KEY_PREFIX}{source}:{int(self._clock() // WINDOW_S)}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(key, 0, ex=WINDOW_S + 1, nx=True)
                pipe.incr(key)
                await pipe.execute()
        except RedisError as error:
            self._redis_unavailable(error)

    def _redis_unavailable(self, error: RedisError) -> None:
        log.warning(
            "sign_in_throttle.redis_unavailable", extra={"error_type": type(error).__name__}
        )
