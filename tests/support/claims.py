"""A claim of every due task, as the store tests of the polling engine take it before they read,
write back or release what they leased."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.store.db import transaction
from service.store.poll_claims import claim_due_tasks


async def claim_all(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int = 10_000
) -> tuple[uuid.UUID, list[int]]:
    async with transaction(sessions) as session:
        return await claim_due_tasks(session, now, lease_s=30, limit=limit)
