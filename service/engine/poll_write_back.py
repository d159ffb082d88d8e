"""A polled batch written back in one transaction: every decision (guarded by the batch's lease
token) with the events and deliveries of final states, the estimate's and the callback records'
new counts, and the leases of the tasks that were not polled handed back. After the commit, the
new deliveries are sent by this process and changes of callback trust take effect.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock
from service.domain.states import TaskState
from service.engine.account_estimate import AccountEstimate
from service.engine.callback_trust import CallbackTrust
from service.observability.metrics import record_task_finished
from service.store.db import transaction
from service.store.leased_tasks import release_leases
from service.store.poll_results import (
    PollWrite,
    WrittenTask,
    record_poll_results_leasing_deliveries,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotPolled:
    """A task handed back without a call; due again no earlier than `not_before`."""

    id: int
    not_before: datetime | None = None


@dataclass
class BatchReport:
    calls: int = 0
    written: int = 0
    released: int = 0
    skipped: int = 0
    decisions: dict[str, int] = field(default_factory=dict)


class DeliveriesToSend(Protocol):
    """Sends at once the deliveries a write-back leased to this process (the worker's webhook
    deliveries, service/webhooks/batch_delivery.py), so they need not wait for the scheduler's
    claim."""

    @property
    def lease_s(self) -> float: ...

    async def start_batch(self, ids: Sequence[int], lease_token: uuid.UUID) -> int: ...


class PollWriteBack:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        estimate: AccountEstimate,
        trust: CallbackTrust,
        deliveries: DeliveriesToSend,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._estimate = estimate
        self._trust = trust
        self._deliveries = deliveries
        self._clock = clock

    async def write(
        self,
        lease_token: uuid.UUID,
        writes: list[PollWrite],
        not_polled: list[NotPolled],
        report: BatchReport,
    ) -> None:
        now = self._clock()
        by_not_before: dict[datetime | None, list[int]] = defaultdict(list)
        for item in not_polled:
            by_not_before[item.not_before].append(item.id)
        # The new deliveries are leased to this process for as long as a claimed delivery's lease.
        deliveries_leased_until = now + timedelta(seconds=self._deliveries.lease_s)
        async with transaction(self._sessions) as session:
            written, delivery_ids = await record_poll_results_leasing_deliveries(
                session, lease_token, writes, now, deliveries_leased_until
            )
            await self._estimate.add_completions(session, writes, written, now)
            trust_changes = await self._trust.count(session, written, now)
            for not_before, task_ids in by_not_before.items():
                report.released += await release_leases(
                    session, task_ids, lease_token, now, not_before=not_before
                )
        if delivery_ids:
            # Committed: they are ours under the batch's token until the lease ends.
            await self._deliveries.start_batch(delivery_ids, lease_token)
        for change in trust_changes:
            await self._trust.apply(change, now)
        _report_written(report, writes, written)


def _report_written(
    report: BatchReport, writes: Sequence[PollWrite], written: Sequence[WrittenTask]
) -> None:
    report.written = len(written)
    for write in writes:
        kind = write.decision.kind.value
        report.decisions[kind] = report.decisions.get(kind, 0) + 1
    for task in written:
        record_task_finished(task.state)
        if task.state == TaskState.EXPIRED:
            log.info("task.expired", extra={"task_id": task.task_id, "task_pk": task.id})
    if len(written) < len(writes):
        # Lost the lease in between (a cancel, or a lease that ran out and was re-claimed): the
        # guard kept those rows as they were.
        log.info("poll.write_back_skipped", extra={"tasks": len(writes) - len(written)})
