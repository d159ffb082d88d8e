"""The last test event sent to each subscription in PostgreSQL (service/store/pings.py): kept on
its subscription for its client only, overwritten by the next, and read back only for the
subscriptions ever tested."""

from __future__ import annotations

import secrets

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.store.db import transaction
from service.store.pings import SentTestEvent, last_test_attempts, record_test_attempt
from service.store.subscriptions import SubscriptionRow
from tests.support.factories import insert_client, subscribe


def sent(subscription: SubscriptionRow, status: int | None, error: str | None) -> SentTestEvent:
    return SentTestEvent(
        subscription_id=subscription.id,
        at=utc_now(),
        webhook_id=f"msg_test_{secrets.token_hex(8)}",
        status=status,
        latency_ms=42,
        error=error,
    )


async def test_the_last_test_is_kept_overwritten_and_read_for_the_tested_ones_only(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        tested = await subscribe(session, client_id)
        untested = await subscribe(session, client_id)
    first, second = sent(tested, 200, None), sent(tested, None, "connection refused")
    async with transaction(sessions) as session:
        assert await record_test_attempt(session, client_id, first)
        assert await record_test_attempt(session, client_id, second)
        kept = await last_test_attempts(session, client_id, [tested.pk, untested.pk])
    assert kept == {tested.id: second}
    assert (first.succeeded, second.succeeded) == (True, False)


async def test_another_clients_subscription_keeps_nothing_and_shows_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    other_id = await insert_client(sessions)
    async with transaction(sessions) as session:
        subscription = await subscribe(session, client_id)
    async with transaction(sessions) as session:
        assert not await record_test_attempt(session, other_id, sent(subscription, 200, None))
        assert await last_test_attempts(session, client_id, [subscription.pk]) == {}
        assert await record_test_attempt(session, client_id, sent(subscription, 204, None))
        assert await last_test_attempts(session, other_id, [subscription.pk]) == {}
        assert list(await last_test_attempts(session, client_id, [subscription.pk])) == [
            subscription.id
        ]
