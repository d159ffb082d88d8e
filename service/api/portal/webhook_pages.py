"""The portal's webhook pages: failed deliveries (redeliver one, recover a time window) and
subscriptions (create, enable or disable, set the pace, rotate and reveal the secret, send a test
event, see each endpoint's health, and re-enable a disabled one and catch it up). Each reads and
writes through service.features, as the REST API does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from service.api.deps import SessionDep
from service.api.portal.rendering import render
from service.api.portal.session import (
    PORTAL_PATH,
    PortalRefusal,
    PortalRoute,
    PortalSession,
    PortalSessionDep,
    all_values,
    read_form,
    see_other,
)
from service.api.resources import resources_of
from service.domain.intake import TASK_ID_PATTERN
from service.domain.pacing import MAX_RPS_MAX, MAX_RPS_MIN
from service.domain.states import EventType
from service.features import deliveries as delivery_feature
from service.features import subscriptions as subscription_feature
from service.features.deliveries import Recovery
from service.features.errors import InvalidInput, NoDeliveryTo, SubscriptionDisabled
from service.features.paging import PAGE_SIZE_DEFAULT
from service.features.subscriptions import (
    SUBSCRIPTIONS_SHOWN,
    SubscriptionChange,
    SubscriptionCreate,
)

MAX_RPS_HINT = f"max rps must be a whole number from {MAX_RPS_MIN} to {MAX_RPS_MAX}, or empty"

router = APIRouter(route_class=PortalRoute)


# --- deliveries ---------------------------------------------------------------------------------


@router.get("/deliveries")
async def failed_deliveries(
    request: Request,
    session: PortalSessionDep,
    db: SessionDep,
    before: Annotated[datetime | None, Query()] = None,
) -> Response:
    client_id = session.client.id
    page = await delivery_feature.list_failed_deliveries(
        db, client_id, before=before, size=PAGE_SIZE_DEFAULT
    )
    subscriptions = await subscription_feature.list_subscriptions(
        db, client_id, before_pk=None, size=SUBSCRIPTIONS_SHOWN
    )
    return render(
        request,
        "deliveries.html",
        {
            "deliveries": page.items,
            "next_before": None if page.last is None else page.last.finished_at.isoformat(),
            "subscriptions": subscriptions.items,
            "default_since": (resources_of(request).clock() - timedelta(days=1)).strftime(
                "%Y-%m-%dT%H:%M"
            ),
        },
        session=session,
    )


@router.post("/events/{event_id}/redeliver")
async def redeliver(
    request: Request, event_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    fields = await read_form(request, session)
    try:
        put_back = await delivery_feature.redeliver(
            db,
            session.client.id,
            event_id,
            fields.get("subscription_id") or None,
            resources_of(request).clock(),
        )
    except (NoDeliveryTo, SubscriptionDisabled):
        put_back = []
    notice = "redelivered" if put_back else "not-redelivered"
    back = fields.get("back", "")
    if back.startswith(f"{PORTAL_PATH}/tasks/") and TASK_ID_PATTERN.fullmatch(
        back.removeprefix(f"{PORTAL_PATH}/tasks/")
    ):
        return see_other(f"{back}?notice={notice}")
    return see_other(f"{PORTAL_PATH}/deliveries?notice={notice}")


def _utc_minute(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PortalRefusal(422, f"{name} must be a date and time, e.g. 2026-12-01T09:30") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@router.post("/subscriptions/{subscription_id}/recover")
async def recover(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    fields = await read_form(request, session)
    since = _utc_minute(fields.get("since", ""), "since")
    until = _utc_minute(fields["until"], "until") if fields.get("until") else None
    await delivery_feature.recover_failed(
        db, session.client.id, subscription_id, since, until, resources_of(request).clock()
    )
    return see_other(f"{PORTAL_PATH}/deliveries?notice=recovered")


# --- subscriptions ------------------------------------------------------------------------------


async def _subscriptions_page(
    request: Request,
    session: PortalSession,
    db: SessionDep,
    *,
    shown_secret: tuple[str, str, str] | None = None,
    caught_up: tuple[str, Recovery] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    page = await subscription_feature.list_subscriptions(
        db, session.client.id, before_pk=None, size=SUBSCRIPTIONS_SHOWN
    )
    now = resources_of(request).clock()
    return render(
        request,
        "subscriptions.html",
        {
            "subscriptions": page.items,
            "disabled": [row for row in page.items if not row.enabled],
            "event_types": list(EventType),
            "shown_secret": shown_secret,
            "caught_up": caught_up,
            "last_tests": await subscription_feature.last_test_attempts(
                db, session.client.id, page.items
            ),
            "health": await subscription_feature.health_of(db, session.client.id, page.items, now),
            "max_rps_bounds": (MAX_RPS_MIN, MAX_RPS_MAX),
            "error": error,
        },
        session=session,
        status_code=status_code,
    )


def _max_rps(value: str) -> int | None:
    """The form's max rps: empty is no limit; anything but a whole number is refused here (the
    bounds are the feature's rule, SubscriptionCreate / SubscriptionChange)."""
    text = value.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise ValueError(MAX_RPS_HINT)
    return int(text)


@router.get("/subscriptions")
async def subscriptions(request: Request, session: PortalSessionDep, db: SessionDep) -> Response:
    return await _subscriptions_page(request, session, db)


@router.post("/subscriptions")
async def create_subscription(
    request: Request, session: PortalSessionDep, db: SessionDep
) -> Response:
    fields = await read_form(request, session)
    url = fields.get("url", "").strip()
    chosen = await all_values(request, "event_types")
    try:
        event_types = [EventType(value) for value in chosen] or None
    except ValueError:
        raise PortalRefusal(422, "unknown event type") from None
    try:
        max_rps = _max_rps(fields.get("max_rps", ""))
        # The REST route's own rules (lengths, NUL, repeated event types), not a second copy.
        checked = SubscriptionCreate(
            url=url,
            event_types=event_types,
            description=fields.get("description", ""),
            max_rps=max_rps,
        )
    except (ValueError, ValidationError):
        checked = None
    if not url or checked is None:
        return await _subscriptions_page(
            request,
            session,
            db,
            error=f"Give an http(s) URL (and a short description); {MAX_RPS_HINT}.",
            status_code=422,
        )
    try:
        row, secret = await subscription_feature.create_subscription(
            db, resources_of(request), session.client.id, checked
        )
    except InvalidInput as refused:
        return await _subscriptions_page(
            request, session, db, error=refused.detail, status_code=refused.status
        )
    return await _subscriptions_page(
        request, session, db, shown_secret=(row.id, secret, "created; its signing secret is")
    )


@router.post("/subscriptions/{subscription_id}/enabled")
async def set_enabled(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    fields = await read_form(request, session)
    enabled = fields.get("enabled") == "true"
    await subscription_feature.change_subscription(
        db,
        resources_of(request),
        session.client.id,
        subscription_id,
        SubscriptionChange(enabled=enabled),
    )
    notice = "enabled" if enabled else "disabled"
    return see_other(f"{PORTAL_PATH}/subscriptions?notice={notice}")


@router.post("/subscriptions/{subscription_id}/pace")
async def set_pace(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    fields = await read_form(request, session)
    try:
        change = SubscriptionChange(max_rps=_max_rps(fields.get("max_rps", "")))
    except (ValueError, ValidationError):
        return await _subscriptions_page(
            request, session, db, error=f"{MAX_RPS_HINT}.", status_code=422
        )
    await subscription_feature.change_subscription(
        db, resources_of(request), session.client.id, subscription_id, change
    )
    return see_other(f"{PORTAL_PATH}/subscriptions?notice=paced#{subscription_id}")


@router.post("/subscriptions/{subscription_id}/catch-up")
async def enable_and_catch_up(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    await read_form(request, session)
    recovery = await delivery_feature.enable_and_catch_up(
        db, resources_of(request), session.client.id, subscription_id
    )
    return await _subscriptions_page(request, session, db, caught_up=(subscription_id, recovery))


@router.post("/subscriptions/{subscription_id}/rotate")
async def rotate(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    await read_form(request, session)
    secret = await subscription_feature.rotate_secret(
        db, resources_of(request), session.client.id, subscription_id
    )
    return await _subscriptions_page(
        request,
        session,
        db,
        shown_secret=(subscription_id, secret, "rotated (the old secret signs too for 24 h); new"),
    )


@router.post("/subscriptions/{subscription_id}/reveal")
async def reveal(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    await read_form(request, session)
    secret = await subscription_feature.reveal_secret(
        db, resources_of(request), session.client.id, subscription_id
    )
    return await _subscriptions_page(
        request, session, db, shown_secret=(subscription_id, secret, "signing secret:")
    )


@router.post("/subscriptions/{subscription_id}/test")
async def send_test(
    request: Request, subscription_id: str, session: PortalSessionDep, db: SessionDep
) -> Response:
    await read_form(request, session)
    sent = await subscription_feature.send_test_event_to(
        db, resources_of(request), session.client.id, subscription_id
    )
    # Redirected, so reloading the page shows the result again without sending another test.
    return see_other(f"{PORTAL_PATH}/subscriptions?notice=tested#{sent.subscription_id}")
