"""The /v1/events routes: the feed of this client's events (oldest first) and single events.
Delivery routes (`/v1/events/{id}/deliveries`, `/redeliver`) live in their own router."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from service.api.deps import AutocommitDep, ClientDep
from service.api.errors import problem_responses
from service.api.pagination import LimitQuery, Page
from service.api.paths import EventIdPath
from service.api.responses import json_response
from service.domain.schemas import EventOut
from service.features import events as event_feature
from service.features.events import EventRow
from service.features.paging import PAGE_SIZE_DEFAULT

router = APIRouter(prefix="/v1/events", tags=["events"], responses=problem_responses(422, 503))

AfterQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description="An event id of this client: return the events after it. Omit it to start "
        "at the oldest event.",
    ),
]


@router.get("", response_model=Page[EventOut], summary="This client's events, oldest first")
async def list_events(
    client: ClientDep,
    conn: AutocommitDep,
    after: AfterQuery = None,
    limit: LimitQuery = PAGE_SIZE_DEFAULT,
) -> Response:
    feed = await event_feature.read_feed(conn, client.id, after=after, size=limit)
    return json_response(
        {"data": [_event_body(row) for row in feed.events], "next_cursor": feed.next_after}
    )


@router.get(
    "/{event_id}",
    response_model=EventOut,
    summary="Read an event",
    responses=problem_responses(404),
)
async def get_event(event_id: EventIdPath, client: ClientDep, conn: AutocommitDep) -> Response:
    return json_response(_event_body(await event_feature.find_event(conn, client.id, event_id)))


def _event_body(row: EventRow) -> dict[str, Any]:
    # `data` is the task as it was when the event was written, already in its JSON form.
    return {"id": row.public_id, "type": row.type, "created_at": row.created_at, "data": row.data}
