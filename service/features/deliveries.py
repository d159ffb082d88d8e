"""Webhook deliveries as a client sees and fixes them: an event's deliveries with their attempts,
redeliver an event, the deliveries that ended failed, and recover a subscription's failures of a
time window."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.features.errors import (
    BrokenRule,
    InvalidInput,
    NoDeliveryTo,
    SubscriptionDisabled,
)
from service.features.ids import no_such_event, require_event_id
from service.features.paging import Page, fetch_page
from service.features.subscriptions import find_subscription
from service.store import deliveries as delivery_store
from service.store import portal as portal_store
from service.store.deliveries import AttemptView, DeliveryView
from service.store.portal import FailedDelivery

__all__ = ["AttemptView", "DeliveryView", "FailedDelivery"]


async def _event_pk(session: AsyncSession, client_id: int, event_id: str) -> int:
    pk = await delivery_store.find_event_pk(session, client_id, require_event_id(event_id))
    if pk is None:
        raise no_such_event(event_id)
    return pk


async def list_event_deliveries(
    session: AsyncSession, client_id: int, event_id: str
) -> list[DeliveryView]:
    """The deliveries of one of the client's events, each with its attempts."""
    return await delivery_store.list_event_deliveries(
        session, await _event_pk(session, client_id, event_id)
    )


async def redeliver(
    session: AsyncSession,
    client_id: int,
    event_id: str,
    subscription_id: str | None,
    now: datetime,
) -> list[DeliveryView]:
    """Send the event's deliveries (or the one to `subscription_id`) again, due now, with a
    fresh schedule; the deliveries put back, as they are now. A disabled or deleted
    subscription's delivery is left alone; when it was the one named: SubscriptionDisabled, and
    NoDeliveryTo when the event has no delivery to it."""
    event_pk = await _event_pk(session, client_id, event_id)
    # Put back first, then read the deliveries once: the answer shows them as they are now, and
    # when the named subscription's delivery was not put back, the same read tells why (the
    # error rolls the unit of work back).
    put_back = set(await delivery_store.redeliver_event(session, event_pk, subscription_id, now))
    listed = await delivery_store.list_event_deliveries(session, event_pk)
    if subscription_id is not None and not put_back:
        if not any(d.subscription_id == subscription_id for d in listed):
            raise NoDeliveryTo(
                "delivery",
                f"event {event_id!r} has no delivery to subscription {subscription_id!r}",
            )
        raise SubscriptionDisabled(
            f"subscription {subscription_id!r} is disabled or deleted; enable it to redeliver"
        )
    return [delivery for delivery in listed if delivery.id in put_back]


async def list_failed_deliveries(
    session: AsyncSession, client_id: int, *, before: datetime | None, size: int
) -> Page[FailedDelivery]:
    """The client's deliveries that ended failed, newest first, finished before `before`."""
    return await fetch_page(
        lambda limit: portal_store.list_failed_deliveries(
            session, client_id, before=before, limit=limit
        ),
        size,
    )


async def recover_failed(
    session: AsyncSession,
    client_id: int,
    subscription_id: str,
    since: datetime,
    until: datetime | None,
    now: datetime,
) -> int:
    """Send again every delivery of the subscription that ended failed in [since, until) (until
    defaults to now); how many. InvalidInput for an empty window, SubscriptionDisabled when the
    subscription is disabled."""
    if until is not None and until <= since:
        raise InvalidInput(
            "until must be later than since", [BrokenRule("until", "not after since")]
        )
    subscription = await find_subscription(session, client_id, subscription_id)
    if not subscription.enabled:
        raise SubscriptionDisabled(
            f"subscription {subscription_id!r} is disabled; enable it before recovering"
        )
    return await delivery_store.recover_failed(session, subscription.pk, since, until, now)
