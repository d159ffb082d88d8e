"""The store snapshot: the database's facts behind the API's gauges (tasks by state, the due
backlog and its age, deliveries by state), kept in Redis.

Why not count at scrape time: counting tasks by state reads every retained task (millions), and
every API process would do it on every scrape. Instead one scheduler (a Redis lock per interval)
counts every PHONEBRIDGE_METRICS_REFRESH_S and stores the result; a scrape is one GET. The
snapshot carries its time, and the API exports its age, so a stale one is visible. Like all Redis
state it is rebuildable: after a FLUSHALL the next refresh writes it again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any, Final

import orjson
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.schedule import DEFAULT_HALF_LIFE_S
from service.store.db import transaction
from service.store.stats import StoreStats, read_store_stats

log = logging.getLogger(__name__)

SNAPSHOT_KEY: Final = "phonebridge:metrics:store_snapshot"
REFRESH_LOCK_KEY: Final = "phonebridge:metrics:store_snapshot:lock"
# A snapshot nobody refreshes any more (no scheduler runs) disappears instead of lying forever.
SNAPSHOT_TTL_INTERVALS: Final = 20


class StoreSnapshotRefresh:
    """Scheduler step: count, at most once per interval across every scheduler."""

    name = "store_snapshot"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis[Any],
        interval_s: float,
        *,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self.interval_s = interval_s
        self._half_life_s = half_life_s

    async def run(self, now: datetime) -> None:
        # Slightly shorter than the interval: schedulers ticking a little apart still refresh
        # once per interval, not once per two.
        lock_ms = max(1, round(self.interval_s * 900))
        if not await self._redis.set(REFRESH_LOCK_KEY, "1", px=lock_ms, nx=True):
            return
        async with transaction(self._sessions) as session:
            stats = await read_store_stats(session, now, half_life_s=self._half_life_s)
        await write_snapshot(
            self._redis, stats, now, ttl_s=self.interval_s * SNAPSHOT_TTL_INTERVALS
        )


async def write_snapshot(redis: Redis[Any], stats: StoreStats, at: datetime, ttl_s: float) -> None:
    document = {"at": at.isoformat(), **asdict(stats)}
    await redis.set(SNAPSHOT_KEY, orjson.dumps(document), px=max(1, round(ttl_s * 1000)))


async def read_snapshot(redis: Redis[Any]) -> tuple[datetime, StoreStats] | None:
    raw = await redis.get(SNAPSHOT_KEY)
    if raw is None:
        return None
    try:
        document = orjson.loads(raw)
        at = datetime.fromisoformat(document.pop("at"))
        # A newer scheduler (a rolling upgrade) may write facts this process does not know yet.
        known = {f.name for f in fields(StoreStats)}
        return at, StoreStats(**{k: v for k, v in document.items() if k in known})
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("metrics.snapshot_unreadable")
        return None
