"""Webhook delivery run by hand: the scheduler's delivery step and a worker, on a clock the test
moves forward, so that retries come due without waiting."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.store.db import transaction
from service.store.deliveries import claim_due_deliveries
from service.webhooks.batch_delivery import DeliveryReport, DeliveryService
from service.webhooks.dispatch import delivery_lease_s


class FakeClock:
    """Real time plus an offset the test moves forward, so retries come due without waiting."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


class Pump:
    """The scheduler's delivery step and a worker, run by hand: claim what is due by the fake
    clock, deliver it, wait for the write-back."""

    def __init__(
        self,
        service: DeliveryService,
        sessions: async_sessionmaker[AsyncSession],
        clock: FakeClock,
        settings: Settings,
    ) -> None:
        self.service = service
        self.sessions = sessions
        self.clock = clock
        self.lease_s = delivery_lease_s(settings)

    async def claim(self) -> tuple[uuid.UUID, list[int]]:
        async with transaction(self.sessions) as session:
            return await claim_due_deliveries(session, self.clock(), self.lease_s, 1000)

    async def once(self) -> DeliveryReport:
        token, ids = await self.claim()
        return await self.service.deliver_batch(ids, token)
