"""Completion-time estimates of known shape, and the stored ones read back or forgotten."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.completion import BIN_COUNT, EDGES, CompletionEstimate
from service.store.db import transaction
from service.store.estimates import ACCOUNT_WIDE, StoredEstimate, load_estimate


def uniform_estimate(up_to_bin: int, total: float = 1000.0) -> tuple[CompletionEstimate, float]:
    """Answers uniformly spread over (0, EDGES[up_to_bin]]: each bin's weight is proportional to
    its width, so the estimate's CDF is exactly age / end. Returns the estimate and the end."""
    end = EDGES[up_to_bin]
    weights = [
        total * (EDGES[i + 1] - EDGES[i]) / end if i < up_to_bin else 0.0 for i in range(BIN_COUNT)
    ]
    return CompletionEstimate(tuple(weights)), end


async def clear_estimates(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Forget every learnt completion time: a test that counts on a cold or known estimate must
    not inherit what earlier tests taught the same account."""
    async with transaction(sessions) as session:
        await session.execute(text("DELETE FROM completion_estimates"))


async def estimate_of(
    sessions: async_sessionmaker[AsyncSession], account: str, client_id: int = ACCOUNT_WIDE
) -> StoredEstimate | None:
    async with sessions() as session:
        return await load_estimate(session, account, client_id)
