"""What polling has learnt about when a client's answers arrive (service/features/stats.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from service.clock import utc_now
from service.features.stats import completion_times
from service.store.estimates import add_to_estimates
from tests.support.estimates import uniform_estimate


async def test_a_client_without_completions_has_learnt_nothing(
    session: AsyncSession, client_id: int
) -> None:
    estimate, updated_at = await completion_times(session, client_id, utc_now(), 3600.0)

    assert estimate.total == 0
    assert updated_at is None


async def test_a_client_sees_its_own_completions_and_when_they_were_learnt(
    session: AsyncSession, client_id: int
) -> None:
    learnt, _ = uniform_estimate(up_to_bin=10, total=200.0)
    now = utc_now()
    await add_to_estimates(session, "test-account", {client_id: learnt.weights}, now, 3600.0)

    estimate, updated_at = await completion_times(session, client_id, now, 3600.0)

    assert abs(estimate.total - 200.0) < 1e-6
    assert updated_at == now
