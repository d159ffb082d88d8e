"""The life of the events a subscription missed and of `subscription.disabled` in PostgreSQL: the
disable's event goes to the client's other live subscriptions that name it (service/store/
outbox.py); recover's catch-up sends a subscription the events of its window it takes and never
had, and nothing else (service/store/event_deliveries.py); retention purges old events about
subscriptions (service/store/retention.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.store.db import transaction
from service.store.event_deliveries import send_missed_events
from service.store.outbox import record_subscription_disabled
from service.store.retention import purge_subscription_events
from tests.support.factories import emit_event, insert_client, insert_subscription

Sessions = async_sessionmaker[AsyncSession]
DISABLED = "subscription.disabled"
NOW = datetime.now(UTC)
DAY = timedelta(days=1)


async def delivered_to(sessions: Sessions, subscription_pk: int) -> list[str]:
    """The public ids of the events a subscription has a delivery of."""
    async with sessions() as session:
        result = await session.execute(
            text(
                "SELECT e.public_id FROM deliveries d JOIN events e ON e.id = d.event_id"
                " WHERE d.subscription_id = :s ORDER BY e.id"
            ),
            {"s": subscription_pk},
        )
        return [str(row[0]) for row in result]


async def set_enabled(sessions: Sessions, subscription_pk: int, enabled: bool) -> None:
    async with transaction(sessions) as session:
        await session.execute(
            text("UPDATE subscriptions SET enabled = :e WHERE id = :s"),
            {"e": enabled, "s": subscription_pk},
        )


async def test_the_disable_event_goes_to_the_other_live_subscriptions_that_name_it(
    sessions: Sessions,
) -> None:
    client_id = await insert_client(sessions)
    other_client = await insert_client(sessions)
    gone = await insert_subscription(sessions, client_id, [DISABLED, "task.completed"])
    told = await insert_subscription(sessions, client_id, [DISABLED])
    not_named = await insert_subscription(sessions, client_id, ["task.completed"])
    off = await insert_subscription(sessions, client_id, [DISABLED], enabled=False)
    deleted = await insert_subscription(sessions, client_id, [DISABLED], deleted=True)
    foreign = await insert_subscription(sessions, other_client, [DISABLED])

    async with transaction(sessions) as session:
        event = await record_subscription_disabled(session, gone, '{"id": "sub_x"}', NOW)

    assert event.deliveries == 1
    assert await delivered_to(sessions, told) == [event.event_id]
    for subscription in (gone, not_named, off, deleted, foreign):
        assert await delivered_to(sessions, subscription) == []


async def test_catching_up_sends_the_windows_events_it_takes_and_never_had(
    sessions: Sessions,
) -> None:
    client_id = await insert_client(sessions)
    subscription = await insert_subscription(sessions, client_id, ["task.completed", DISABLED])
    had = await emit_event(sessions, client_id)  # sent while it was enabled
    await set_enabled(sessions, subscription, False)
    missed = [await emit_event(sessions, client_id) for _ in range(2)]
    other_type = await emit_event(sessions, client_id, "expired")
    async with transaction(sessions) as session:
        own_disable = await record_subscription_disabled(session, subscription, "{}", NOW)
    await set_enabled(sessions, subscription, True)

    async with transaction(sessions) as session:
        # A window that ended before anything happened sends nothing.
        assert await send_missed_events(session, subscription, NOW - DAY, NOW - DAY / 2, NOW) == 0
        sent = await send_missed_events(session, subscription, NOW - DAY, None, NOW)
        again = await send_missed_events(session, subscription, NOW - DAY, None, NOW)

    assert (sent, again) == (2, 0)
    delivered = await delivered_to(sessions, subscription)
    assert delivered == [had, *missed]
    assert other_type not in delivered
    assert own_disable.event_id not in delivered


async def test_catching_up_never_sends_what_came_before_the_subscription(
    sessions: Sessions,
) -> None:
    client_id = await insert_client(sessions)
    before = await emit_event(sessions, client_id)
    subscription = await insert_subscription(sessions, client_id, ["task.completed"])
    async with transaction(sessions) as session:
        sent = await send_missed_events(session, subscription, NOW - DAY, None, NOW)
    assert sent == 0
    assert before not in await delivered_to(sessions, subscription)


async def test_retention_purges_old_events_about_subscriptions_but_not_pending_ones(
    sessions: Sessions,
) -> None:
    client_id = await insert_client(sessions)
    gone = await insert_subscription(sessions, client_id, [DISABLED])
    told = await insert_subscription(sessions, client_id, [DISABLED])
    old = NOW - 40 * DAY
    async with transaction(sessions) as session:
        sent = await record_subscription_disabled(session, gone, "{}", old)
        pending = await record_subscription_disabled(session, gone, "{}", old)
        recent = await record_subscription_disabled(session, gone, "{}", NOW)
        await session.execute(
            text(
                "UPDATE deliveries SET state = 'succeeded' FROM events e"
                " WHERE e.id = deliveries.event_id AND e.public_id IN (:sent, :recent)"
            ),
            {"sent": sent.event_id, "recent": recent.event_id},
        )
        purged = await purge_subscription_events(session, NOW - 30 * DAY, 100)

    assert purged == 1
    assert await delivered_to(sessions, told) == [pending.event_id, recent.event_id]
