"""Lease heartbeats: a worker renews the leases of every row it is working on, so a lease can be
a few seconds long and still never run out under a live worker that is slow (a 10 s upstream
timeout, batches spread over a full rate ceiling, a receiver that takes its whole timeout).

Each batch a worker works on is *held* here (its ids and lease token, `hold`) from the moment
it is loaded until it is written back. Every `interval_s` one transaction renews all of them,
one statement per table (store/leases.py `renew_leases`); a check job item is held from its call
until its answer is written (service/engine/job_items.py), its `submitting` lease only ever
lengthened. A worker that dies stops renewing, and its rows come due again one lease later; a
worker cut off from the database stops renewing too, and stops starting calls once its lease is
too short to finish one (`HeldLease.valid_until`, read by the poller before each call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import Clock, utc_now
from service.store.db import transaction
from service.store.leases import LeasedTable, renew_leases

log = logging.getLogger(__name__)

# Renewals per lease: three may fail (or be late) before a live worker's lease runs out.
RENEWALS_PER_LEASE = 4


@dataclass
class HeldLease:
    """One claimed batch a worker is working on; `valid_until` moves forward with each renewal
    that still found rows of it."""

    table: LeasedTable
    token: uuid.UUID
    ids: tuple[int, ...]
    valid_until: datetime
    renewals: int = field(default=0)


class LeaseKeeper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        lease_s: float,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._lease_s = lease_s
        self._clock = clock
        self._held: dict[int, HeldLease] = {}
        self.interval_s = lease_s / RENEWALS_PER_LEASE

    @contextlib.contextmanager
    def hold(
        self, table: LeasedTable, token: uuid.UUID, ids: Sequence[int], valid_until: datetime
    ) -> Iterator[HeldLease]:
        """Renew this batch's leases until the block ends."""
        held = HeldLease(table, token, tuple(ids), valid_until)
        self._held[id(held)] = held
        try:
            yield held
        finally:
            del self._held[id(held)]

    @property
    def held(self) -> list[HeldLease]:
        return list(self._held.values())

    async def renew(self) -> int:
        """One heartbeat: every held lease extended in one transaction; returns how many
        batches still hold rows."""
        batches = self.held
        if not batches:
            return 0
        now = self._clock()
        until = now + timedelta(seconds=self._lease_s)
        renewed: set[uuid.UUID] = set()
        async with transaction(self._sessions) as session:
            for table in LeasedTable:
                pairs = [(i, b.token) for b in batches if b.table is table for i in b.ids]
                if pairs:
                    renewed |= await renew_leases(session, table, pairs, until)
        for batch in batches:
            if batch.token in renewed:
                batch.valid_until = until
                batch.renewals += 1
        return sum(batch.token in renewed for batch in batches)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Heartbeat every `interval_s` until `stop`; a failed renewal is logged and the next
        one tried on time (leases outlast three missed renewals)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            if stop.is_set():
                return
            try:
                await self.renew()
            except Exception as error:
                log.warning(
                    "lease.renewal_failed",
                    extra={"error_type": type(error).__name__, "batches": len(self._held)},
                )
