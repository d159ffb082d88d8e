"""An event's webhook deliveries: read them with their attempts, and send them again."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from starlette.responses import Response

from service.api.bodies import JsonBodyRoute
from service.api.deps import ClientDep, ResourcesDep, SessionDep
from service.api.errors import problem_responses
from service.api.paths import EventIdPath
from service.api.responses import json_response
from service.domain.public_ids import PUBLIC_ID_MAX_LENGTH, is_public_id_shaped
from service.domain.states import DeliveryState
from service.features import deliveries as delivery_feature

router = APIRouter(
    prefix="/v1/events",
    tags=["events"],
    responses=problem_responses(422, 503),
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


@router.get(
    "/{event_id}/deliveries",
    response_model=DeliveryList,
    summary="An event's webhook deliveries and their attempts",
    responses=problem_responses(404),
)
async def list_deliveries(
    event_id: EventIdPath, client: ClientDep, session: SessionDep
) -> Response:
    deliveries = await delivery_feature.list_event_deliveries(session, client.id, event_id)
    return json_response({"data": deliveries})


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
    subscription_id = body.subscription_id if body is not None else None
    put_back = await delivery_feature.redeliver(
        session, client.id, event_id, subscription_id, resources.clock()
    )
    return json_response({"data": put_back}, status_code=202)
