"""The /v1/subscriptions routes: webhook endpoints, their secrets, their health, and recovering
what they did not get."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from starlette.responses import Response

from service.api.bodies import JsonBodyRoute
from service.api.deps import ClientDep, ResourcesDep, SessionDep
from service.api.errors import problem_responses
from service.api.pagination import (
    CursorQuery,
    LimitQuery,
    Page,
    decode_row_cursor,
    encode_row_cursor,
)
from service.api.paths import SubscriptionIdPath
from service.api.responses import NO_STORE, json_response
from service.domain.schemas import SubscriptionOut
from service.features import deliveries as delivery_feature
from service.features import subscriptions as subscription_feature
from service.features.paging import PAGE_SIZE_DEFAULT
from service.features.subscriptions import (
    SubscriptionChange,
    SubscriptionCreate,
    SubscriptionHealth,
    SubscriptionRow,
)

router = APIRouter(
    prefix="/v1/subscriptions",
    tags=["subscriptions"],
    responses=problem_responses(422, 503),
    route_class=JsonBodyRoute,
)


def _a_string(value: object) -> object:
    """A timestamp comes as RFC 3339 text: a number (seconds since 1970?) is refused, not read."""
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-01-31T09:30:00Z")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_a_string)]


class RecoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Rfc3339 = Field(description="RFC 3339 with a timezone.")
    until: Rfc3339 | None = Field(default=None, description="Defaults to now.")


class SubscriptionWithSecret(SubscriptionOut):
    secret: str = Field(description="`whsec_...`: verifies the signatures of its webhooks.")


class SecretOut(BaseModel):
    secret: str


class RecoverAccepted(BaseModel):
    status: Literal["accepted"]
    deliveries: int = Field(description="How many deliveries will be sent: `recovered` + `missed`.")
    recovered: int = Field(description="Deliveries that ended failed in the window, sent again.")
    missed: int = Field(
        description="Events of the window it takes but was never sent (it was disabled then), "
        "sent now."
    )


class LastHourOut(BaseModel):
    attempts: int = Field(description="Attempts made in the last hour (at most the newest 50,000).")
    succeeded: int
    success_rate: float | None = Field(description="succeeded / attempts; null without attempts.")
    p95_latency_ms: float | None = Field(
        description="95% of those attempts had their answer (or gave up) within this; null "
        "without attempts."
    )


class SubscriptionHealthOut(BaseModel):
    last_success_at: datetime | None = Field(description="Its latest successful attempt.")
    failing_since: datetime | None = Field(
        description="Its first failed attempt after its last success; null while the latest "
        "attempt succeeded. Every attempt failing for PHONEBRIDGE_WEBHOOK_DISABLE_AFTER_S "
        "from then disables it (`failing`)."
    )
    failures_in_row: int = Field(description="Failed attempts since its last success.")
    last_hour: LastHourOut


def _subscription_body(row: SubscriptionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "event_types": row.event_types,
        "description": row.description,
        "enabled": row.enabled,
        "created_at": row.created_at,
        "max_rps": row.max_rps,
        "disabled_reason": row.disabled_reason,
        "include_job_items": row.include_job_items,
    }


def _health_body(health: SubscriptionHealth) -> dict[str, Any]:
    return {
        "last_success_at": health.last_success_at,
        "failing_since": health.failing_since,
        "failures_in_row": health.failures_in_row,
        "last_hour": {
            "attempts": health.attempts,
            "succeeded": health.succeeded,
            "success_rate": health.success_rate,
            "p95_latency_ms": health.p95_latency_ms,
        },
    }


# --- routes -----------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=SubscriptionWithSecret,
    summary="Create a webhook subscription",
)
async def create_subscription(
    body: SubscriptionCreate,
    client: ClientDep,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    row, secret = await subscription_feature.create_subscription(
        session, resources, client.id, body
    )
    return json_response(
        {**_subscription_body(row), "secret": secret}, status_code=201, headers=NO_STORE
    )


@router.get("", response_model=Page[SubscriptionOut], summary="List subscriptions, newest first")
async def list_subscriptions(
    client: ClientDep,
    session: SessionDep,
    limit: LimitQuery = PAGE_SIZE_DEFAULT,
    cursor: CursorQuery = None,
) -> Response:
    before = decode_row_cursor(cursor) if cursor is not None else None
    page = await subscription_feature.list_subscriptions(
        session, client.id, before_pk=before, size=limit
    )
    return json_response(
        {
            "data": [_subscription_body(row) for row in page.items],
            "next_cursor": None if page.last is None else encode_row_cursor(page.last.pk),
        }
    )


@router.get(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    summary="Read a subscription",
    responses=problem_responses(404),
)
async def get_subscription(
    subscription_id: SubscriptionIdPath, client: ClientDep, session: SessionDep
) -> Response:
    row = await subscription_feature.find_subscription(session, client.id, subscription_id)
    return json_response(_subscription_body(row))


@router.get(
    "/{subscription_id}/health",
    response_model=SubscriptionHealthOut,
    summary="How a subscription's endpoint is doing",
    responses=problem_responses(404),
)
async def get_subscription_health(
    subscription_id: SubscriptionIdPath,
    client: ClientDep,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    health = await subscription_feature.find_health(
        session, client.id, subscription_id, resources.clock()
    )
    return json_response(_health_body(health))


@router.get(
    "/{subscription_id}/secret",
    response_model=SecretOut,
    summary="Read a subscription's signing secret",
    responses=problem_responses(404),
)
async def get_secret(
    subscription_id: SubscriptionIdPath,
    client: ClientDep,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    secret = await subscription_feature.reveal_secret(
        session, resources, client.id, subscription_id
    )
    return json_response({"secret": secret}, headers=NO_STORE)


@router.patch(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    summary="Change a subscription",
    responses=problem_responses(404),
)
async def change_subscription(
    subscription_id: SubscriptionIdPath,
    body: SubscriptionChange,
    client: ClientDep,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    row = await subscription_feature.change_subscription(
        session, resources, client.id, subscription_id, body
    )
    return json_response(_subscription_body(row))


@router.delete(
    "/{subscription_id}",
    status_code=204,
    summary="Delete a subscription (its pending deliveries stop)",
    responses=problem_responses(404),
)
async def delete_subscription(
    subscription_id: SubscriptionIdPath,
    client: ClientDep,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    await subscription_feature.delete_subscription(
        session, client.id, subscription_id, resources.clock()
    )
    return Response(status_code=204)


@router.post(
    "/{subscription_id}/rotate-secret",
    response_model=SecretOut,
    summary="Rotate the signing secret; the old one keeps signing for 24 hours",
    responses=problem_responses(404),
)
async def rotate_secret(
    subscription_id: SubscriptionIdPath,
    client: ClientDep,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    secret = await subscription_feature.rotate_secret(
        session, resources, client.id, subscription_id
    )
    return json_response({"secret": secret}, headers=NO_STORE)


@router.post(
    "/{subscription_id}/recover",
    status_code=202,
    response_model=RecoverAccepted,
    summary="Send again what failed between since and until, and what it missed while disabled",
    responses=problem_responses(404, 409),
)
async def recover_subscription(
    subscription_id: SubscriptionIdPath,
    body: RecoverRequest,
    client: ClientDep,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    recovery = await delivery_feature.recover_failed(
        session, client.id, subscription_id, body.since, body.until, resources.clock()
    )
    return json_response(
        {
            "status": "accepted",
            "deliveries": recovery.deliveries,
            "recovered": recovery.recovered,
            "missed": recovery.missed,
        },
        status_code=202,
    )
