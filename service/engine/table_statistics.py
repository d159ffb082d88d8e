"""A scheduler step: analyze a busy table whose statistics autovacuum has let fall far behind
(service/domain/table_statistics.py says when and why), so that no plan made while it was small
outlives its growth. Every STATISTICS_INTERVAL_S; one scheduler at a time (an advisory lock);
all in the lock's transaction (other connections' plans are remade once it commits), each table
logged. With autovacuum on and keeping up it never analyzes.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.table_statistics import needs_analyze
from service.store.db import take_turn, transaction
from service.store.table_statistics import STATISTICS_LOCK_ID, analyze, changes_since_analyze

log = logging.getLogger(__name__)

# Autovacuum's naptime (PostgreSQL's default): a table is looked at about as often.
STATISTICS_INTERVAL_S = 60.0


class TableStatisticsRefresh:
    name = "table_statistics"

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], interval_s: float = STATISTICS_INTERVAL_S
    ) -> None:
        self._sessions = sessions
        self.interval_s = interval_s

    async def run(self, now: datetime) -> None:
        async with transaction(self._sessions) as session:
            if not await take_turn(session, STATISTICS_LOCK_ID):
                return
            stale = [
                t for t in await changes_since_analyze(session) if needs_analyze(t.rows, t.changed)
            ]
            for table in stale:
                started = time.perf_counter()
                await analyze(session, table.table)
                log.info(
                    "store.table_analyzed",
                    extra={
                        "table": table.table,
                        "rows": table.rows,
                        "changed_since_analyze": table.changed,
                        "duration_ms": round(1000 * (time.perf_counter() - started), 1),
                    },
                )
