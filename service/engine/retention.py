"""The scheduler's retention step: purge what PHONEBRIDGE_RETENTION_DAYS no longer keeps, in
small batches, one transaction each, one scheduler at a time (an advisory lock per batch)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.budgets import ledger_kept_from
from service.observability.metrics import RETENTION_PURGED
from service.store.budgets import purge_ledger_days
from service.store.checks import purge_check_records
from service.store.db import take_turn, transaction
from service.store.retention import (
    RETENTION_LOCK_ID,
    purge_finished_jobs,
    purge_finished_tasks,
    purge_subscription_events,
)

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S: Final = 60.0
RETENTION_BATCH: Final = 500
# 100 batches a minute is 72,000 tasks an hour: far more than are registered, so a backlog (the
# first run on an old database) drains within hours without one run holding on for long.
RETENTION_MAX_BATCHES: Final = 100


class RetentionPurge:
    name = "retention"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        retention_days: float,
        *,
        interval_s: float = RETENTION_INTERVAL_S,
        batch: int = RETENTION_BATCH,
        max_batches: int = RETENTION_MAX_BATCHES,
    ) -> None:
        self._sessions = sessions
        self._retention = timedelta(days=retention_days)
        self.interval_s = interval_s
        self._batch = batch
        self._max_batches = max_batches

    async def run(self, now: datetime) -> None:
        """Purge tasks finished before `now - retention`, events about subscriptions older than
        that and check jobs finished before it (after their tasks), then submissions past the
        Idempotency-Key's 24 hours, early hints past their validity and the budget ledger's old
        days; returns when done or out of turns."""
        cutoff = now - self._retention

        async def finished_tasks(session: AsyncSession) -> int:
            deleted = await purge_finished_tasks(session, cutoff, self._batch)
            RETENTION_PURGED.inc(deleted)
            return deleted

        if purged := await self._in_batches(finished_tasks):
            log.info("retention.purged", extra={"tasks": purged, "cutoff": cutoff.isoformat()})
        if purged := await self._in_batches(
            lambda session: purge_subscription_events(session, cutoff, self._batch)
        ):
            log.info("retention.purged_subscription_events", extra={"events": purged})
        if purged := await self._in_batches(
            lambda session: purge_finished_jobs(session, cutoff, self._batch)
        ):
            log.info("retention.purged_check_jobs", extra={"rows": purged})
        if purged := await self._in_batches(
            lambda session: purge_check_records(session, now, self._batch)
        ):
            log.info("retention.purged_check_records", extra={"rows": purged})
        if purged := await self._in_batches(
            lambda session: purge_ledger_days(session, ledger_kept_from(now), self._batch)
        ):
            log.info("retention.purged_budget_days", extra={"rows": purged})

    async def _in_batches(self, purge: Callable[[AsyncSession], Awaitable[int]]) -> int:
        """Run `purge` (one batch, returns rows deleted) in its own transaction while this
        scheduler holds the retention turn, until a batch comes back short or the run is out of
        batches; returns the rows deleted in all."""
        purged = 0
        for _ in range(self._max_batches):
            async with transaction(self._sessions) as session:
                if not await take_turn(session, RETENTION_LOCK_ID):
                    break
                deleted = await purge(session)
            purged += deleted
            if deleted < self._batch:
                break
        return purged
