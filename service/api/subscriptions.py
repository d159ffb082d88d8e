"""The /v1/subscriptions routes: webhook endpoints, their secrets, and recovering failed sends."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
)
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from service.api.bodies import JsonBodyRoute
from service.api.deps import ClientDep, ResourcesDep, SessionDep
from service.api.errors import ApiProblem, FieldProblem, invalid_input, problem_responses
from service.api.pagination import (
    CursorQuery,
    LimitQuery,
    Page,
    decode_row_cursor,
    encode_row_cursor,
)
from service.api.paths import SubscriptionIdPath, no_such_subscription
from service.api.resources import ApiResources
from service.api.responses import NO_STORE, json_response
from service.domain import problems
from service.domain.ids import SUBSCRIPTION_PREFIX, new_public_id
from service.domain.signing import SECRET_BYTES, new_secret
from service.domain.states import EventType
from service.store import deliveries as delivery_store
from service.store import subscriptions as subscription_store
from service.webhooks.guard import check_webhook_url

router = APIRouter(
    prefix="/v1/subscriptions",
    tags=["subscriptions"],
    responses=problem_responses(401, 422, 429, 503),
    route_class=JsonBodyRoute,
)

MAX_DESCRIPTION = 1000


def _a_string(value: object) -> object:
    """A timestamp comes as RFC 3339 text: a number (seconds since 1970?) is refused, not read."""
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-01-31T09:30:00Z")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_a_string)]


def _no_nul(value: str | None) -> str | None:
    # Postgres text refuses NUL; refusing it here keeps a bad body a 422, never a 5xx.
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _distinct(values: list[EventType] | None) -> list[EventType] | None:
    return None if values is None else list(dict.fromkeys(values))


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: StrictStr = Field(
        max_length=2048,
        description="An http(s) URL. Unless private addresses are allowed by the operator, its "
        "host must resolve only to public addresses.",
        examples=["https://hooks.example.com/phonebridge"],
    )
    event_types: list[EventType] | None = Field(
        default=None, min_length=1, description="Defaults to every event type."
    )
    description: StrictStr = Field(default="", max_length=MAX_DESCRIPTION)

    _checks = field_validator("url", "description")(_no_nul)
    _types = field_validator("event_types")(_distinct)


class SubscriptionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: StrictStr | None = Field(default=None, max_length=2048)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    # Strict: "yes" or 1 is not a boolean.
    enabled: StrictBool | None = None
    description: StrictStr | None = Field(default=None, max_length=MAX_DESCRIPTION)

    _checks = field_validator("url", "description")(_no_nul)
    _types = field_validator("event_types")(_distinct)


class RecoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Rfc3339 = Field(description="RFC 3339 with a timezone.")
    until: Rfc3339 | None = Field(default=None, description="Defaults to now.")


class SubscriptionOut(BaseModel):
    id: str
    url: str
    event_types: list[EventType]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why it was disabled, e.g. the endpoint answered 410."
    )
    created_at: datetime


class SubscriptionWithSecret(SubscriptionOut):
    secret: str = Field(description="`whsec_...`: verifies the signatures of its webhooks.")


class SecretOut(BaseModel):
    secret: str


class RecoverAccepted(BaseModel):
    status: Literal["accepted"]
    recovered: int = Field(description="How many failed deliveries go out again.")


# --- shared helpers ---------------------------------------------------------------------------


async def _refuse_unsafe_url(resources: ApiResources, url: str) -> None:
    refusal = await check_webhook_url(
        url, resources.resolver, resources.settings.webhook_allow_private
    )
    if refusal is not None:
        raise invalid_input(
            f"url is not allowed: {refusal.reason}",
            [FieldProblem(field="url", message=refusal.reason)],
        )


def _subscription_body(row: subscription_store.SubscriptionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "event_types": row.event_types,
        "description": row.description,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "created_at": row.created_at,
    }


async def _existing(
    session: SessionDep, client: ClientDep, subscription_id: str
) -> subscription_store.SubscriptionRow:
    row = await subscription_store.find_subscription(session, client.id, subscription_id)
    if row is None:
        raise no_such_subscription(subscription_id)
    return row


async def open_subscription(
    session: AsyncSession,
    resources: ApiResources,
    client_id: int,
    url: str,
    event_types: list[EventType] | None,
    description: str,
) -> tuple[subscription_store.SubscriptionRow, str]:
    """Create a subscription (its URL vetted first) and its secret; the REST route and the
    portal both create through this. Returns the row and the secret in clear, shown once."""
    await _refuse_unsafe_url(resources, url)
    public_id = new_public_id(SUBSCRIPTION_PREFIX)
    secret = new_secret(os.urandom(SECRET_BYTES))
    row = await subscription_store.insert_subscription(
        session,
        client_id=client_id,
        public_id=public_id,
        url=url,
        event_types=event_types or list(EventType),
        description=description,
        secret_encrypted=resources.cipher.encrypt(secret, public_id),
        now=resources.clock(),
    )
    return row, secret


async def rotate_signing_secret(
    session: AsyncSession, resources: ApiResources, client_id: int, subscription_id: str
) -> str | None:
    """A new secret for the subscription (the old one keeps signing for 24 hours); None when
    the client has no such subscription."""
    secret = new_secret(os.urandom(SECRET_BYTES))
    encrypted = resources.cipher.encrypt(secret, subscription_id)
    rotated = await subscription_store.rotate_secret(
        session, client_id, subscription_id, encrypted, resources.clock()
    )
    return secret if rotated else None


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
    row, secret = await open_subscription(
        session, resources, client.id, body.url, body.event_types, body.description
    )
    return json_response(
        {**_subscription_body(row), "secret": secret}, status_code=201, headers=NO_STORE
    )


@router.get("", response_model=Page[SubscriptionOut], summary="List subscriptions, newest first")
async def list_subscriptions(
    client: ClientDep, session: SessionDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Response:
    before = decode_row_cursor(cursor) if cursor is not None else None
    rows = await subscription_store.list_subscriptions(
        session, client.id, before_pk=before, limit=limit + 1
    )
    page, more = rows[:limit], len(rows) > limit
    return json_response(
        {
            "data": [_subscription_body(row) for row in page],
            "next_cursor": encode_row_cursor(page[-1].pk) if more else None,
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
    return json_response(_subscription_body(await _existing(session, client, subscription_id)))


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
    stored = await subscription_store.find_secret(session, client.id, subscription_id)
    if stored is None:
        raise no_such_subscription(subscription_id)
    secret = resources.cipher.decrypt(stored, subscription_id)
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
    changes = body.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise invalid_input(
                f"{field} cannot be null; leave it out to keep it",
                [FieldProblem(field=field, message="must not be null")],
            )
    existing = await _existing(session, client, subscription_id)
    if "url" in changes:
        await _refuse_unsafe_url(resources, changes["url"])
    if not changes:
        return json_response(_subscription_body(existing))
    row = await subscription_store.update_subscription(
        session, client.id, subscription_id, changes, resources.clock()
    )
    if row is None:
        raise no_such_subscription(subscription_id)
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
    deleted = await subscription_store.delete_subscription(
        session, client.id, subscription_id, resources.clock()
    )
    if not deleted:
        raise no_such_subscription(subscription_id)
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
    secret = await rotate_signing_secret(session, resources, client.id, subscription_id)
    if secret is None:
        raise no_such_subscription(subscription_id)
    return json_response({"secret": secret}, headers=NO_STORE)


@router.post(
    "/{subscription_id}/recover",
    status_code=202,
    response_model=RecoverAccepted,
    summary="Send again every delivery that ended failed between since and until",
    responses=problem_responses(404, 409),
)
async def recover_subscription(
    subscription_id: SubscriptionIdPath,
    body: RecoverRequest,
    client: ClientDep,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    if body.until is not None and body.until <= body.since:
        raise invalid_input(
            "until must be later than since",
            [FieldProblem(field="until", message="not after since")],
        )
    existing = await _existing(session, client, subscription_id)
    if not existing.enabled:
        raise ApiProblem(
            409,
            f"subscription {subscription_id!r} is disabled; enable it before recovering",
            kind=problems.SUBSCRIPTION_DISABLED,
        )
    recovered = await delivery_store.recover_failed(
        session, existing.pk, body.since, body.until, resources.clock()
    )
    return json_response({"status": "accepted", "recovered": recovered}, status_code=202)
