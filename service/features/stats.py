"""What polling has learnt about when a client's upstream answers arrive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.completion import CompletionEstimate
from service.store.estimates import client_estimate


async def completion_times(
    session: AsyncSession, client_id: int, now: datetime, half_life_s: float
) -> tuple[CompletionEstimate, datetime | None]:
    """The client's completion-time estimate, decayed to `now`, and when it last learnt."""
    return await client_estimate(session, client_id, now, half_life_s)
