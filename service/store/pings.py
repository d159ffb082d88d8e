"""The last test event sent to each subscription (the portal's "send a test event",
service/webhooks/ping.py): kept on the subscription's row, overwritten by the next, read for the
client's subscriptions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.delivery import is_success
from service.store.subscriptions import of_client, subscriptions
from service.store.tables.webhooks import Subscription


@dataclass(frozen=True, slots=True)
class SentTestEvent:
    """The last test event sent to a subscription (the portal's "send a test event")."""

    subscription_id: str
    at: datetime
    webhook_id: str
    status: int | None
    latency_ms: int
    error: str | None

    @property
    def succeeded(self) -> bool:
        return is_success(self.status)


TEST_ATTEMPT_COLUMNS = (
    Subscription.public_id,
    Subscription.last_test_at,
    Subscription.last_test_webhook_id,
    Subscription.last_test_status,
    Subscription.last_test_latency_ms,
    Subscription.last_test_error,
)


def _sent_test_event(
    row: Row[str, datetime | None, str | None, int | None, int | None, str | None],
) -> SentTestEvent | None:
    subscription_id, at, webhook_id, status, latency_ms, error = row
    # A test writes these together: all are set once a subscription was tested at all.
    if at is None or webhook_id is None or latency_ms is None:
        return None
    return SentTestEvent(
        subscription_id=subscription_id,
        at=at,
        webhook_id=webhook_id,
        status=status,
        latency_ms=latency_ms,
        error=error,
    )


async def record_test_attempt(
    session: AsyncSession, client_id: int, attempt: SentTestEvent
) -> bool:
    """Keep `attempt` as the subscription's last test (the previous one is overwritten); False
    when the subscription is gone."""
    statement = (
        update(subscriptions)
        .where(of_client(client_id, attempt.subscription_id))
        .values(
            last_test_at=attempt.at,
            last_test_webhook_id=attempt.webhook_id,
            last_test_status=attempt.status,
            last_test_latency_ms=attempt.latency_ms,
            last_test_error=attempt.error,
        )
        .returning(subscriptions.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def last_test_attempts(
    session: AsyncSession, client_id: int, subscription_pks: Sequence[int]
) -> dict[str, SentTestEvent]:
    """The last test attempt of each of these subscriptions that was ever tested, by id."""
    if not subscription_pks:
        return {}
    statement = select(*TEST_ATTEMPT_COLUMNS).where(
        subscriptions.c.client_id == client_id,
        subscriptions.c.id.in_(list(subscription_pks)),
        subscriptions.c.last_test_at.is_not(None),
    )
    sent = [_sent_test_event(row) for row in await session.execute(statement)]
    return {event.subscription_id: event for event in sent if event is not None}
