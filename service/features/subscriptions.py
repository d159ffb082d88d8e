"""Webhook subscriptions: create (its URL vetted, its secret made), read, list, change, delete,
rotate and reveal the signing secret, send a test event, and how its endpoint is doing (its
health). `SubscriptionCreate` and `SubscriptionChange` are the rules of their fields, for the REST
bodies and the portal's forms alike."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.pacing import MAX_RPS_MAX, MAX_RPS_MIN
from service.domain.public_ids import SUBSCRIPTION_PREFIX, new_public_id
from service.domain.signing import SECRET_BYTES, new_secret
from service.domain.states import TASK_EVENT_TYPES, EventType
from service.features.errors import BrokenRule, InvalidInput
from service.features.ids import no_such_subscription, require_subscription_id
from service.features.paging import Page, fetch_page
from service.features.resources import FeatureResources
from service.store import endpoint_health as health_store
from service.store import pings as ping_store
from service.store import subscriptions as subscription_store
from service.store.endpoint_health import SubscriptionHealth
from service.store.pings import SentTestEvent
from service.store.subscriptions import SubscriptionRow
from service.webhooks.guard import check_webhook_url
from service.webhooks.ping import send_test_event
from service.webhooks.sender import WebhookSender

__all__ = ["SentTestEvent", "SubscriptionHealth", "SubscriptionRow"]

MAX_DESCRIPTION = 1000
URL_MAX_LENGTH = 2048
# The portal lists at most this many subscriptions on one page.
SUBSCRIPTIONS_SHOWN = 100
# A subscription's health counts its attempts of this last stretch of time.
HEALTH_WINDOW = timedelta(hours=1)

MAX_RPS_DESCRIPTION = (
    f"At most this many requests in any sliding second ({MAX_RPS_MIN}-{MAX_RPS_MAX}), across "
    "every worker: a burst waits for its turns without using up its retries. null: no limit."
)


def _no_nul(value: str | None) -> str | None:
    # Postgres text refuses NUL; refusing it here keeps a bad body a 422, never a 5xx.
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _distinct(values: list[EventType] | None) -> list[EventType] | None:
    return None if values is None else list(dict.fromkeys(values))


INCLUDE_JOB_ITEMS_DESCRIPTION = (
    "false: the task events of check jobs' items are not sent to it (`job.completed` still is, "
    "when named in `event_types`)."
)


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: StrictStr = Field(
        max_length=URL_MAX_LENGTH,
        description="An http(s) URL. Unless private addresses are allowed by the operator, its "
        "host must resolve only to public addresses.",
        examples=["https://hooks.example.com/phonebridge"],
    )
    event_types: list[EventType] | None = Field(
        default=None,
        min_length=1,
        description="Defaults to the task events (task.completed, task.expired, task.failed); "
        "subscription.disabled only when named.",
    )
    description: StrictStr = Field(default="", max_length=MAX_DESCRIPTION)
    max_rps: StrictInt | None = Field(
        default=None, ge=MAX_RPS_MIN, le=MAX_RPS_MAX, description=MAX_RPS_DESCRIPTION
    )
    include_job_items: StrictBool = Field(default=True, description=INCLUDE_JOB_ITEMS_DESCRIPTION)

    _checks = field_validator("url", "description")(_no_nul)
    _types = field_validator("event_types")(_distinct)


class SubscriptionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: StrictStr | None = Field(default=None, max_length=URL_MAX_LENGTH)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    # Strict: "yes" or 1 is not a boolean.
    enabled: StrictBool | None = Field(
        default=None, description="true also clears `disabled_reason`."
    )
    description: StrictStr | None = Field(default=None, max_length=MAX_DESCRIPTION)
    max_rps: StrictInt | None = Field(
        default=None, ge=MAX_RPS_MIN, le=MAX_RPS_MAX, description=MAX_RPS_DESCRIPTION
    )
    include_job_items: StrictBool | None = Field(
        default=None, description=INCLUDE_JOB_ITEMS_DESCRIPTION
    )

    _checks = field_validator("url", "description")(_no_nul)
    _types = field_validator("event_types")(_distinct)


# The fields of a change that null sets rather than refuses.
NULLABLE_CHANGES = frozenset({"max_rps"})


async def _refuse_unsafe_url(resources: FeatureResources, url: str) -> None:
    refusal = await check_webhook_url(
        url, resources.resolver, resources.settings.webhook_allow_private
    )
    if refusal is not None:
        raise InvalidInput(
            f"url is not allowed: {refusal.reason}", [BrokenRule("url", refusal.reason)]
        )


async def create_subscription(
    session: AsyncSession, resources: FeatureResources, client_id: int, new: SubscriptionCreate
) -> tuple[SubscriptionRow, str]:
    """Create a subscription (its URL vetted first) and its secret; the row and the secret in
    clear, shown once."""
    await _refuse_unsafe_url(resources, new.url)
    public_id = new_public_id(SUBSCRIPTION_PREFIX)
    secret = new_secret(os.urandom(SECRET_BYTES))
    row = await subscription_store.insert_subscription(
        session,
        client_id=client_id,
        public_id=public_id,
        url=new.url,
        event_types=new.event_types or list(TASK_EVENT_TYPES),
        description=new.description,
        secret_encrypted=resources.cipher.encrypt(secret, public_id),
        now=resources.clock(),
        max_rps=new.max_rps,
        include_job_items=new.include_job_items,
    )
    return row, secret


async def find_subscription(
    session: AsyncSession, client_id: int, subscription_id: str
) -> SubscriptionRow:
    row = await subscription_store.find_subscription(
        session, client_id, require_subscription_id(subscription_id)
    )
    if row is None:
        raise no_such_subscription(subscription_id)
    return row


async def list_subscriptions(
    session: AsyncSession, client_id: int, *, before_pk: int | None, size: int
) -> Page[SubscriptionRow]:
    """The client's subscriptions, newest first, below row id `before_pk`."""
    return await fetch_page(
        lambda limit: subscription_store.list_subscriptions(
            session, client_id, before_pk=before_pk, limit=limit
        ),
        size,
    )


async def change_subscription(
    session: AsyncSession,
    resources: FeatureResources,
    client_id: int,
    subscription_id: str,
    change: SubscriptionChange,
) -> SubscriptionRow:
    """Apply the fields the change sets (a new URL vetted first); InvalidInput for a field set
    to null, but max_rps (null: no limit)."""
    changes: dict[str, Any] = change.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None and field not in NULLABLE_CHANGES:
            raise InvalidInput(
                f"{field} cannot be null; leave it out to keep it",
                [BrokenRule(field, "must not be null")],
            )
    existing = await find_subscription(session, client_id, subscription_id)
    if "url" in changes:
        await _refuse_unsafe_url(resources, changes["url"])
    if changes.get("max_rps", existing.max_rps) == existing.max_rps:
        # The same pace: its timeline of turns goes on.
        changes.pop("max_rps", None)
    if not changes:
        return existing
    row = await subscription_store.update_subscription(
        session, client_id, subscription_id, changes, resources.clock()
    )
    if row is None:
        raise no_such_subscription(subscription_id)
    return row


async def delete_subscription(
    session: AsyncSession, client_id: int, subscription_id: str, now: datetime
) -> None:
    """Delete the subscription; its pending deliveries stop."""
    deleted = await subscription_store.delete_subscription(
        session, client_id, require_subscription_id(subscription_id), now
    )
    if not deleted:
        raise no_such_subscription(subscription_id)


async def rotate_secret(
    session: AsyncSession, resources: FeatureResources, client_id: int, subscription_id: str
) -> str:
    """A new signing secret (the old one keeps signing for 24 hours), in clear, shown once."""
    require_subscription_id(subscription_id)
    secret = new_secret(os.urandom(SECRET_BYTES))
    encrypted = resources.cipher.encrypt(secret, subscription_id)
    rotated = await subscription_store.rotate_secret(
        session, client_id, subscription_id, encrypted, resources.clock()
    )
    if not rotated:
        raise no_such_subscription(subscription_id)
    return secret


async def reveal_secret(
    session: AsyncSession, resources: FeatureResources, client_id: int, subscription_id: str
) -> str:
    """The subscription's current signing secret, in clear."""
    stored = await subscription_store.find_secret(
        session, client_id, require_subscription_id(subscription_id)
    )
    if stored is None:
        raise no_such_subscription(subscription_id)
    return resources.cipher.decrypt(stored, subscription_id)


async def health_of(
    session: AsyncSession, client_id: int, subscriptions: list[SubscriptionRow], now: datetime
) -> dict[str, SubscriptionHealth]:
    """How each of these subscriptions' endpoints is doing, by id: its last success, its failures
    in a row, and its attempts of the last hour (success rate, p95 latency)."""
    return await health_store.subscription_health(
        session, client_id, [row.pk for row in subscriptions], now - HEALTH_WINDOW
    )


async def find_health(
    session: AsyncSession, client_id: int, subscription_id: str, now: datetime
) -> SubscriptionHealth:
    """How one subscription's endpoint is doing (see `health_of`)."""
    row = await find_subscription(session, client_id, subscription_id)
    return (await health_of(session, client_id, [row], now))[row.id]


async def last_test_attempts(
    session: AsyncSession, client_id: int, subscriptions: list[SubscriptionRow]
) -> dict[str, SentTestEvent]:
    """The last test event sent to each of these subscriptions that was ever tested, by id."""
    return await ping_store.last_test_attempts(
        session, client_id, [row.pk for row in subscriptions]
    )


async def send_test_event_to(
    session: AsyncSession, resources: FeatureResources, client_id: int, subscription_id: str
) -> SentTestEvent:
    """Send one signed `webhook.test` request to the subscription now and keep its outcome as
    the subscription's last test (in a transaction of its own)."""
    subscription = await find_subscription(session, client_id, subscription_id)
    secret = await reveal_secret(session, resources, client_id, subscription.id)
    settings = resources.settings
    sender = WebhookSender(
        settings.webhook_timeout_s, settings.webhook_allow_private, resources.resolver
    )
    try:
        return await send_test_event(
            sender, resources.sessions, resources.clock, client_id, subscription, secret
        )
    finally:
        await sender.close()
