"""The scheduler's delivery step: claim due deliveries with a lease and hand them to workers.

Like polls, the wait between attempts lives in `deliveries.next_attempt_at`, never in a broker
message (no Celery ETA/countdown). A delivery's lease covers the time a worker may need to send it
(PHONEBRIDGE_LEASE_S plus one webhook timeout), so a live attempt is never claimed twice; a
crashed worker's deliveries come due again when it ends.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.observability.metrics import DELIVERY_CLAIMS
from service.store.db import transaction
from service.store.deliveries import claim_due_deliveries
from service.store.leases import MAX_BATCHES_PER_TICK

log = logging.getLogger(__name__)

DELIVERY_BATCH_SIZE = 200


class DeliveryPublisher(Protocol):
    """Sends one delivery message (a batch of ids and their lease token) to the workers."""

    def __call__(self, ids: list[int], lease_token: uuid.UUID) -> None: ...


def delivery_lease_s(settings: Settings) -> float:
    """A claimed delivery's lease: the worker sending it renews it for as long as it works on it
    (service/heartbeat.py), so it need not cover a whole attempt's timeout."""
    return settings.lease_s


class DeliveryDispatch:
    """Claims due deliveries and sends them to the workers in batches."""

    name = "delivery_dispatch"

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        publish: DeliveryPublisher,
        *,
        batch_size: int = DELIVERY_BATCH_SIZE,
    ) -> None:
        self.interval_s = settings.scheduler_tick_s
        self._lease_s = delivery_lease_s(settings)
        self._sessions = sessions
        self._publish = publish
        self._batch_size = batch_size

    async def run(self, now: datetime) -> None:
        async with transaction(self._sessions) as session:
            token, ids = await claim_due_deliveries(
                session, now, self._lease_s, limit=self._batch_size * MAX_BATCHES_PER_TICK
            )
        DELIVERY_CLAIMS.inc(len(ids))
        for start in range(0, len(ids), self._batch_size):
            self._publish(ids[start : start + self._batch_size], token)
        if ids:
            log.debug("webhook.dispatched", extra={"deliveries": len(ids)})
