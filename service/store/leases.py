"""The lease pattern shared by polls and webhook deliveries: one statement claims due rows under a
fresh token (`FOR UPDATE SKIP LOCKED`, so concurrent claimers never take the same row), and every
later write is guarded by that token."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncSession

# One tick claims at most this many batches: a huge backlog is spread over ticks rather than
# leased all at once (leases would run out in the broker's queue).
MAX_BATCHES_PER_TICK = 10


async def claim_due(
    session: AsyncSession, claim: TextClause, now: datetime, lease_s: float, limit: int
) -> tuple[uuid.UUID, list[int]]:
    """Run a claim statement (parameters :token, :lease_until, :now, :limit; it returns the ids it
    leased) and return the new lease token with the claimed ids in ascending order."""
    token = uuid.uuid4()
    if limit <= 0:
        return token, []
    result = await session.execute(
        claim,
        {
            "token": token,
            "lease_until": now + timedelta(seconds=lease_s),
            "now": now,
            "limit": limit,
        },
    )
    return token, sorted(int(row[0]) for row in result)
