"""Webhook deliveries as a client sees and fixes them: an event's deliveries with their attempts,
redeliver an event, the deliveries that ended failed, recover a subscription's time window (its
failures sent again, the events it missed sent now), and re-enable a disabled subscription and
catch it up."""

from __future__ import annotations

from dataclasses import dataclass
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
from service.features.resources import FeatureResources
from service.features.subscriptions import (
    SubscriptionChange,
    change_subscription,
    find_subscription,
)
from service.store import event_deliveries as delivery_store
from service.store import portal as portal_store
from service.store.event_deliveries import AttemptView, DeliveryView
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


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a recover sends: failed deliveries again, and deliveries of events never sent."""

    recovered: int
    missed: int

    @property
    def deliveries(self) -> int:
        return self.recovered + self.missed


NOTHING_RECOVERED = Recovery(0, 0)


async def recover_failed(
    session: AsyncSession,
    client_id: int,
    subscription_id: str,
    since: datetime,
    until: datetime | None,
    now: datetime,
) -> Recovery:
    """Send again every delivery of the subscription that ended failed in [since, until) (until
    defaults to now), and send every event of the window it takes but was never sent (it was
    disabled then). Deliveries that succeeded or are pending are left alone, so nothing is sent
    twice. InvalidInput for an empty window, SubscriptionDisabled when the subscription is
    disabled."""
    if until is not None and until <= since:
        raise InvalidInput(
            "until must be later than since", [BrokenRule("until", "not after since")]
        )
    subscription = await find_subscription(session, client_id, subscription_id)
    if not subscription.enabled:
        raise SubscriptionDisabled(
            f"subscription {subscription_id!r} is disabled; enable it before recovering"
        )
    recovered = await delivery_store.recover_failed(session, subscription.pk, since, until, now)
    missed = await delivery_store.send_missed_events(session, subscription.pk, since, until, now)
    return Recovery(recovered, missed)


async def enable_and_catch_up(
    session: AsyncSession, resources: FeatureResources, client_id: int, subscription_id: str
) -> Recovery:
    """Enable a disabled subscription and recover it since its trouble began: the start of its
    run of failures, or its disable, whichever came first (what failed then goes again, what it
    missed while disabled goes now). An enabled subscription has nothing to catch up."""
    subscription = await find_subscription(session, client_id, subscription_id)
    if subscription.enabled:
        return NOTHING_RECOVERED
    began = [
        moment
        for moment in (subscription.failing_since, subscription.disabled_at)
        if moment is not None
    ]
    await change_subscription(
        session, resources, client_id, subscription_id, SubscriptionChange(enabled=True)
    )
    if not began:
        return NOTHING_RECOVERED
    return await recover_failed(
        session, client_id, subscription_id, min(began), None, resources.clock()
    )
