"""Webhook subscriptions: create, read, list, change, soft-delete, rotate the secret.

Every statement is scoped by `client_id` and skips deleted rows, so one client never reaches
another's subscription and a deleted one behaves as if it never existed. Secrets arrive and leave
encrypted (service/webhooks/encryption.py): this module never sees one in clear.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.delivery import is_success
from service.domain.states import EventType
from service.store.deliveries import stop_subscription_deliveries
from service.store.tables import Subscription

subscriptions = cast(Table, Subscription.__table__)


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """The contract's subscription, plus the row id (`pk`) for cursors and joins. Never the
    secrets."""

    pk: int
    id: str
    url: str
    event_types: list[EventType]
    description: str
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


# Named through the ORM class, so a misspelt column fails mypy, and the rows are typed tuples.
SUBSCRIPTION_COLUMNS = (
    Subscription.id,
    Subscription.public_id,
    Subscription.url,
    Subscription.event_types,
    Subscription.description,
    Subscription.enabled,
    Subscription.disabled_reason,
    Subscription.created_at,
)


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

# How long a rotated-out secret keeps signing beside the new one.
ROTATION_OVERLAP = timedelta(hours=24)

_live = subscriptions.c.deleted_at.is_(None)


def _subscription(
    row: Row[int, str, str, list[EventType], str, bool, str | None, datetime],
) -> SubscriptionRow:
    pk, public_id, url, event_types, description, enabled, disabled_reason, created_at = row
    return SubscriptionRow(
        pk=pk,
        id=public_id,
        url=url,
        event_types=event_types,
        description=description,
        enabled=enabled,
        disabled_reason=disabled_reason,
        created_at=created_at,
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


def _of_client(client_id: int, public_id: str) -> Any:
    return (
        (subscriptions.c.client_id == client_id) & (subscriptions.c.public_id == public_id) & _live
    )


async def insert_subscription(
    session: AsyncSession,
    *,
    client_id: int,
    public_id: str,
    url: str,
    event_types: Sequence[EventType],
    description: str,
    secret_encrypted: bytes,
    now: datetime,
) -> SubscriptionRow:
    statement = (
        insert(subscriptions)
        .values(
            public_id=public_id,
            client_id=client_id,
            url=url,
            event_types=list(event_types),
            description=description,
            enabled=True,
            secret_encrypted=secret_encrypted,
            created_at=now,
            updated_at=now,
        )
        .returning(*SUBSCRIPTION_COLUMNS)
    )
    return _subscription((await session.execute(statement)).one())


async def find_subscription(
    session: AsyncSession, client_id: int, public_id: str
) -> SubscriptionRow | None:
    statement = select(*SUBSCRIPTION_COLUMNS).where(_of_client(client_id, public_id))
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else _subscription(row)


async def list_subscriptions(
    session: AsyncSession, client_id: int, *, before_pk: int | None, limit: int
) -> Sequence[SubscriptionRow]:
    """This client's subscriptions, newest first, after the cursor position `before_pk`."""
    statement = select(*SUBSCRIPTION_COLUMNS).where(subscriptions.c.client_id == client_id, _live)
    if before_pk is not None:
        statement = statement.where(subscriptions.c.id < before_pk)
    statement = statement.order_by(subscriptions.c.id.desc()).limit(limit)
    return [_subscription(row) for row in await session.execute(statement)]


async def find_secret(session: AsyncSession, client_id: int, public_id: str) -> bytes | None:
    """The current secret, encrypted."""
    statement = select(subscriptions.c.secret_encrypted).where(_of_client(client_id, public_id))
    return (await session.execute(statement)).scalar_one_or_none()


async def update_subscription(
    session: AsyncSession,
    client_id: int,
    public_id: str,
    changes: Mapping[str, Any],
    now: datetime,
) -> SubscriptionRow | None:
    """Apply `changes` (any of url, event_types, enabled, description). Enabling clears the
    reason it was disabled; disabling stops its pending deliveries."""
    values = dict(changes)
    if values.get("enabled") is True:
        values["disabled_reason"] = None
    elif values.get("enabled") is False:
        values["disabled_reason"] = "disabled by the client"
    statement = (
        update(subscriptions)
        .where(_of_client(client_id, public_id))
        .values(**values, updated_at=now)
        .returning(*SUBSCRIPTION_COLUMNS)
    )
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    subscription = _subscription(row)
    if values.get("enabled") is False:
        await stop_subscription_deliveries(session, subscription.pk, "subscription disabled", now)
    return subscription


async def delete_subscription(
    session: AsyncSession, client_id: int, public_id: str, now: datetime
) -> bool:
    """Soft-delete: the row stays (its deliveries' history stays readable), its pending
    deliveries stop. False when there is no such subscription."""
    statement = (
        update(subscriptions)
        .where(_of_client(client_id, public_id))
        .values(deleted_at=now, enabled=False, updated_at=now)
        .returning(subscriptions.c.id)
    )
    pk = (await session.execute(statement)).scalar_one_or_none()
    if pk is None:
        return False
    await stop_subscription_deliveries(session, pk, "subscription deleted", now)
    return True


async def rotate_secret(
    session: AsyncSession, client_id: int, public_id: str, new_encrypted: bytes, now: datetime
) -> bool:
    """Make `new_encrypted` the signing secret; the current one keeps signing for 24 hours.

    Ciphertexts are bound to the subscription, not to the column, so the current one moves to
    `previous_secret_encrypted` as it is.
    """
    statement = (
        update(subscriptions)
        .where(_of_client(client_id, public_id))
        .values(
            previous_secret_encrypted=subscriptions.c.secret_encrypted,
            previous_secret_expires_at=now + ROTATION_OVERLAP,
            secret_encrypted=new_encrypted,
            updated_at=now,
        )
        .returning(subscriptions.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def record_test_attempt(
    session: AsyncSession, client_id: int, attempt: SentTestEvent
) -> bool:
    """Keep `attempt` as the subscription's last test (the previous one is overwritten); False
    when the subscription is gone."""
    statement = (
        update(subscriptions)
        .where(_of_client(client_id, attempt.subscription_id))
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
