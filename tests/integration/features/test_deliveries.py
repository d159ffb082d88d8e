"""service.features.deliveries: an event's deliveries, redeliver, and recover by time window."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.features import deliveries
from service.features.errors import InvalidInput, NoDeliveryTo, NotFound, SubscriptionDisabled
from tests.support.factories import emit_event, insert_subscription


async def public_id_of(sessions: async_sessionmaker[AsyncSession], subscription_pk: int) -> str:
    async with sessions() as session:
        found = await session.execute(
            text("SELECT public_id FROM subscriptions WHERE id = :pk"), {"pk": subscription_pk}
        )
        return str(found.scalar_one())


async def test_redeliver_puts_back_the_events_deliveries_and_answers_them(
    sessions: async_sessionmaker[AsyncSession], session: AsyncSession, client_id: int
) -> None:
    await insert_subscription(sessions, client_id, ["task.completed"])
    event_id = await emit_event(sessions, client_id)

    put_back = await deliveries.redeliver(session, client_id, event_id, None, utc_now())

    assert len(put_back) == 1
    listed = await deliveries.list_event_deliveries(session, client_id, event_id)
    assert [d.id for d in listed] == [put_back[0].id]


async def test_redeliver_to_a_subscription_the_event_never_went_to_is_no_delivery(
    sessions: async_sessionmaker[AsyncSession], session: AsyncSession, client_id: int
) -> None:
    await insert_subscription(sessions, client_id, ["task.completed"])
    event_id = await emit_event(sessions, client_id)

    with pytest.raises(NoDeliveryTo, match="has no delivery to subscription"):
        await deliveries.redeliver(
            session, client_id, event_id, f"sub_{secrets.token_hex(16)}", utc_now()
        )


async def test_an_unknown_or_malformed_event_is_not_found(
    session: AsyncSession, client_id: int
) -> None:
    for event_id in (f"evt_{secrets.token_hex(16)}", "evt_\x00", "x" * 300):
        with pytest.raises(NotFound) as refused:
            await deliveries.list_event_deliveries(session, client_id, event_id)
        assert refused.value.resource == "event"


async def test_recover_refuses_an_empty_window_before_looking_anything_up(
    session: AsyncSession, client_id: int
) -> None:
    now = utc_now()
    with pytest.raises(InvalidInput, match="until must be later than since"):
        await deliveries.recover_failed(session, client_id, "sub_unknown", now, now, now)


async def test_recover_refuses_a_disabled_subscription_and_counts_an_enabled_ones(
    sessions: async_sessionmaker[AsyncSession], session: AsyncSession, client_id: int
) -> None:
    now = utc_now()
    disabled = await public_id_of(
        sessions, await insert_subscription(sessions, client_id, ["task.completed"], enabled=False)
    )
    enabled = await public_id_of(
        sessions, await insert_subscription(sessions, client_id, ["task.completed"])
    )

    with pytest.raises(SubscriptionDisabled, match="enable it before recovering"):
        await deliveries.recover_failed(session, client_id, disabled, now, None, now)
    since = now - timedelta(days=1)
    recovery = await deliveries.recover_failed(session, client_id, enabled, since, None, now)
    assert recovery.deliveries == 0


async def test_failed_deliveries_are_an_empty_last_page_for_a_new_client(
    session: AsyncSession, client_id: int
) -> None:
    page = await deliveries.list_failed_deliveries(session, client_id, before=None, size=50)
    assert (page.items, page.more, page.last) == ([], False, None)
