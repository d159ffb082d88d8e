"""Webhook subscriptions: create, read, list, change, soft-delete, rotate the secret, disable, and
their secrets read and rewritten by a reseal. (Their run of failures and health:
service/store/endpoint_health.py; the last test event sent to each: service/store/pings.py.)

Every statement a client's request runs is scoped by `client_id` and skips deleted rows, so one
client never reaches another's subscription and a deleted one behaves as if it never existed.
Secrets arrive and leave encrypted (service/webhooks/encryption.py): this module never sees one in
clear.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.schemas import SubscriptionOut
from service.domain.states import DisabledReason, EventType
from service.store.deliveries import clear_waiting_turns, stop_subscription_deliveries
from service.store.tables.webhooks import Subscription

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
    disabled_reason: DisabledReason | None
    created_at: datetime
    max_rps: int | None = None
    # When it was disabled (None while enabled).
    disabled_at: datetime | None = None
    # Its run of failures: the first failed attempt after its last success.
    failing_since: datetime | None = None
    # false: the task events of check jobs' items are not sent to it.
    include_job_items: bool = True

    def public(self) -> SubscriptionOut:
        """The subscription as the contract shows it."""
        return SubscriptionOut.model_validate(self)


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
    Subscription.max_rps,
    Subscription.disabled_at,
    Subscription.failing_since,
    Subscription.include_job_items,
)


# How long a rotated-out secret keeps signing beside the new one.
ROTATION_OVERLAP = timedelta(hours=24)

_live = subscriptions.c.deleted_at.is_(None)


def _subscription(
    row: Row[
        int,
        str,
        str,
        list[EventType],
        str,
        bool,
        DisabledReason | None,
        datetime,
        int | None,
        datetime | None,
        datetime | None,
        bool,
    ],
) -> SubscriptionRow:
    (
        pk,
        public_id,
        url,
        event_types,
        description,
        enabled,
        disabled_reason,
        created_at,
        max_rps,
        disabled_at,
        failing_since,
        include_job_items,
    ) = row
    return SubscriptionRow(
        pk=pk,
        id=public_id,
        url=url,
        event_types=event_types,
        description=description,
        enabled=enabled,
        disabled_reason=disabled_reason,
        created_at=created_at,
        max_rps=max_rps,
        disabled_at=disabled_at,
        failing_since=failing_since,
        include_job_items=include_job_items,
    )


def of_client(client_id: int, public_id: str) -> Any:
    """The condition naming one live subscription of the client, by its public id."""
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
    max_rps: int | None = None,
    include_job_items: bool = True,
) -> SubscriptionRow:
    statement = (
        insert(subscriptions)
        .values(
            include_job_items=include_job_items,
            public_id=public_id,
            client_id=client_id,
            url=url,
            event_types=list(event_types),
            description=description,
            max_rps=max_rps,
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
    statement = select(*SUBSCRIPTION_COLUMNS).where(of_client(client_id, public_id))
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
    statement = select(subscriptions.c.secret_encrypted).where(of_client(client_id, public_id))
    return (await session.execute(statement)).scalar_one_or_none()


async def update_subscription(
    session: AsyncSession,
    client_id: int,
    public_id: str,
    changes: Mapping[str, Any],
    now: datetime,
) -> SubscriptionRow | None:
    """Apply `changes` (any of url, event_types, enabled, description, max_rps,
    include_job_items). Enabling clears
    the reason it was disabled and its run of failures (it starts afresh); the client's disable
    stops its pending deliveries; a new max_rps starts a new timeline of turns, and the
    deliveries waiting in their rows for a turn of the old one take one of the new."""
    values = dict(changes)
    if values.get("enabled") is True:
        was_enabled = subscriptions.c.enabled
        # Enabled again after a disable, its run of failures starts afresh (else the next failed
        # attempt would disable it at once); an enabled one keeps its run.
        values.update(
            disabled_reason=None,
            disabled_at=None,
            failing_since=case((was_enabled, subscriptions.c.failing_since), else_=None),
            failures_in_row=case((was_enabled, subscriptions.c.failures_in_row), else_=0),
            schedule_exhausted=case((was_enabled, subscriptions.c.schedule_exhausted), else_=False),
        )
    elif values.get("enabled") is False:
        values.update(
            disabled_reason=DisabledReason.CLIENT,
            # Disabled already (by phonebridge, say): it keeps the time it went.
            disabled_at=func.coalesce(subscriptions.c.disabled_at, now),
        )
    if "max_rps" in values:
        values["pace_epoch"] = subscriptions.c.pace_epoch + 1
    statement = (
        update(subscriptions)
        .where(of_client(client_id, public_id))
        .values(**values, updated_at=now)
        .returning(*SUBSCRIPTION_COLUMNS)
    )
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    subscription = _subscription(row)
    if values.get("enabled") is False:
        await stop_subscription_deliveries(session, subscription.pk, "subscription disabled", now)
    if "max_rps" in values:
        await clear_waiting_turns(session, subscription.pk, now)
    return subscription


async def delete_subscription(
    session: AsyncSession, client_id: int, public_id: str, now: datetime
) -> bool:
    """Soft-delete: the row stays (its deliveries' history stays readable), its pending
    deliveries stop. False when there is no such subscription."""
    statement = (
        update(subscriptions)
        .where(of_client(client_id, public_id))
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
        .where(of_client(client_id, public_id))
        .values(
            previous_secret_encrypted=subscriptions.c.secret_encrypted,
            previous_secret_expires_at=now + ROTATION_OVERLAP,
            secret_encrypted=new_encrypted,
            updated_at=now,
        )
        .returning(subscriptions.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def disable_subscription(
    session: AsyncSession, subscription_pk: int, reason: DisabledReason, now: datetime
) -> SubscriptionRow | None:
    """phonebridge disables a subscription (its endpoint is gone, or failing) and stops its
    pending deliveries; the subscription as it is now, or None when it was not enabled (so of
    two workers deciding the same disable, one does it)."""
    statement = (
        update(subscriptions)
        .where(subscriptions.c.id == subscription_pk, subscriptions.c.enabled, _live)
        .values(enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now)
        .returning(*SUBSCRIPTION_COLUMNS)
    )
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    await stop_subscription_deliveries(
        session, subscription_pk, f"subscription disabled ({reason})", now
    )
    return _subscription(row)


@dataclass(frozen=True, slots=True)
class StoredSecrets:
    """A subscription's secrets as stored (encrypted), for resealing them under a new key."""

    pk: int
    public_id: str
    secret_encrypted: bytes
    previous_secret_encrypted: bytes | None


async def stored_secrets_after(
    session: AsyncSession, after_pk: int, limit: int
) -> list[StoredSecrets]:
    """Every subscription's stored secrets (deleted ones too: their rows keep ciphertexts), in
    `pk` order after `after_pk`, at most `limit`."""
    statement = (
        select(
            subscriptions.c.id,
            subscriptions.c.public_id,
            subscriptions.c.secret_encrypted,
            subscriptions.c.previous_secret_encrypted,
        )
        .where(subscriptions.c.id > after_pk)
        .order_by(subscriptions.c.id)
        .limit(limit)
    )
    return [
        StoredSecrets(
            pk=pk,
            public_id=public_id,
            secret_encrypted=bytes(secret),
            previous_secret_encrypted=None if previous is None else bytes(previous),
        )
        for pk, public_id, secret, previous in (await session.execute(statement)).all()
    ]


async def replace_stored_secrets(
    session: AsyncSession, read: StoredSecrets, secret: bytes, previous: bytes | None
) -> bool:
    """Write the resealed ciphertexts of `read`'s secrets, unless they changed since they were
    read (a rotation in between wins; the next reseal takes its new secret)."""
    statement = (
        update(subscriptions)
        .where(
            subscriptions.c.id == read.pk,
            subscriptions.c.secret_encrypted == read.secret_encrypted,
            subscriptions.c.previous_secret_encrypted.is_not_distinct_from(
                read.previous_secret_encrypted
            ),
        )
        .values(secret_encrypted=secret, previous_secret_encrypted=previous)
        .returning(subscriptions.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None
