"""A subscription disabled by phonebridge in PostgreSQL (service/store/subscriptions.py): the
disable happens once, keeps its reason and time, and stops the subscription's pending
deliveries."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.states import DisabledReason
from service.store.db import transaction
from service.store.subscriptions import disable_subscription
from tests.support.factories import emit_event, insert_client, insert_subscription

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime.now(UTC)


async def test_a_subscription_is_disabled_once_and_its_pending_deliveries_stop(
    sessions: Sessions,
) -> None:
    client_id = await insert_client(sessions)
    subscription = await insert_subscription(sessions, client_id, ["task.completed"])
    await emit_event(sessions, client_id)
    async with transaction(sessions) as session:
        disabled = await disable_subscription(session, subscription, DisabledReason.FAILING, NOW)
        again = await disable_subscription(session, subscription, DisabledReason.GONE, NOW)
    assert disabled is not None
    assert (disabled.enabled, disabled.disabled_reason, disabled.disabled_at) == (
        False,
        DisabledReason.FAILING,
        NOW,
    )
    assert again is None
    async with sessions() as session:
        states = (
            await session.execute(
                text("SELECT state, last_error FROM deliveries WHERE subscription_id = :s"),
                {"s": subscription},
            )
        ).all()
    assert [(state, error) for state, error in states] == [
        ("failed", "subscription disabled (failing)")
    ]
