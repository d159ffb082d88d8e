"""An event's webhook deliveries: read them with their attempts, and send them again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from starlette.responses import Response

from service.api.bodies import JsonBodyRoute
from service.api.deps import ClientDep, ResourcesDep, SessionDep
from service.api.errors import ApiProblem, not_found, problem_responses
from service.api.paths import EventIdPath, no_such_event
from service.api.responses import json_response
from service.domain import problems
from service.domain.ids import PUBLIC_ID_MAX_LENGTH, is_public_id_shaped
from service.domain.states import DeliveryState
from service.store import deliveries as delivery_store
from service.store.deliveries import DeliveryView

router = APIRouter(
    prefix="/v1/events",
    tags=["events"],
    responses=problem_responses(401, 422, 429, 503),
    route_class=JsonBodyRoute,
)


class AttemptOut(BaseModel):
    at: datetime
    response_status: int | None
    latency_ms: int | None
    error: str | None
    response_excerpt: str | None = Field(
        description="The first KiB of the receiver's answer, decoded as UTF-8."
    )


class DeliveryOut(BaseModel):
    id: str
    subscription_id: str
    state: DeliveryState
    attempt_count: int
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    last_response_status: int | None
    last_error: str | None
    attempts: list[AttemptOut]


class DeliveryList(BaseModel):
    data: list[DeliveryOut]


class RedeliverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscription_id: StrictStr | None = Field(
        default=None,
        max_length=PUBLIC_ID_MAX_LENGTH,
        description="Only the delivery to this subscription.",
    )

    @field_validator("subscription_id")
    @classmethod
    def _shape(cls, value: str | None) -> str | None:
        if value is not None and not is_public_id_shaped(value):
            raise ValueError("is not a subscription id")
        return value


async def _event_pk(session: SessionDep, client: ClientDep, event_id: str) -> int:
    pk = await delivery_store.find_event_pk(session, client.id, event_id)
    if pk is None:
        raise no_such_event(event_id)
    return pk


@router.get(
    "/{event_id}/deliveries",
    response_model=DeliveryList,
    summary="An event's webhook deliveries and their attempts",
    responses=problem_responses(404),
)
async def list_deliveries(
    event_id: EventIdPath, client: ClientDep, session: SessionDep
) -> Response:
    event_pk = await _event_pk(session, client, event_id)
    return json_response({"data": await delivery_store.list_event_deliveries(session, event_pk)})


@router.post(
    "/{event_id}/redeliver",
    status_code=202,
    response_model=DeliveryList,
    summary="Send an event's deliveries (or one of them) again, with a fresh retry schedule",
    responses=problem_responses(404, 409),
)
async def redeliver(
    event_id: EventIdPath,
    client: ClientDep,
    session: SessionDep,
    resources: ResourcesDep,
    body: RedeliverRequest | None = None,
) -> Response:
    event_pk = await _event_pk(session, client, event_id)
    subscription_id = body.subscription_id if body is not None else None
    # Put back first, then read the deliveries once: the answer shows them as they are now, and
    # when the named subscription's delivery was not put back, the same read tells why (the
    # problem rolls the unit of work back).
    put_back = set(
        await delivery_store.redeliver_event(session, event_pk, subscription_id, resources.clock())
    )
    listed = await delivery_store.list_event_deliveries(session, event_pk)
    if subscription_id is not None and not put_back:
        raise _why_not_put_back(listed, event_id, subscription_id)
    return json_response(
        {"data": [delivery for delivery in listed if delivery.id in put_back]},
        status_code=202,
    )


def _why_not_put_back(
    listed: Sequence[DeliveryView], event_id: str, subscription_id: str
) -> ApiProblem:
    if not any(d.subscription_id == subscription_id for d in listed):
        return not_found(f"event {event_id!r} has no delivery to subscription {subscription_id!r}")
    # Only a disabled or deleted subscription's delivery is left alone by redeliver_event.
    return ApiProblem(
        409,
        f"subscription {subscription_id!r} is disabled or deleted; enable it to redeliver",
        kind=problems.SUBSCRIPTION_DISABLED,
    )
