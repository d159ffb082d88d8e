"""The /v1/events routes: the feed of this client's events (oldest first) and single events.
Delivery routes (`/v1/events/{id}/deliveries`, `/redeliver`) live in their own router."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from service.api.deps import AutocommitDep, ClientDep
from service.api.errors import FieldProblem, invalid_input, problem_responses
from service.api.pagination import LimitQuery, Page
from service.api.paths import EventIdPath, no_such_event
from service.api.responses import json_response
from service.domain.ids import is_public_id_shaped
from service.domain.schemas import EventOut
from service.store import events as event_store

router = APIRouter(
    prefix="/v1/events", tags=["events"], responses=problem_responses(401, 422, 429, 503)
)

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
    client: ClientDep, conn: AutocommitDep, after: AfterQuery = None, limit: LimitQuery = 50
) -> Response:
    position = None
    if after is not None:
        if is_public_id_shaped(after):
            position = await event_store.find_feed_position(conn, client.id, after)
        if position is None:
            raise invalid_input(
                "after must be the id of one of this client's events",
                [FieldProblem(field="query.after", message="unknown event id")],
            )
    rows = await event_store.list_settled_events(conn, client.id, after=position, limit=limit)
    return json_response(
        {
            "data": [_event_body(row) for row in rows],
            # A full page may have a successor; a short one is the end of the feed for now.
            "next_cursor": rows[-1].public_id if len(rows) == limit else None,
        }
    )


@router.get(
    "/{event_id}",
    response_model=EventOut,
    summary="Read an event",
    responses=problem_responses(404),
)
async def get_event(event_id: EventIdPath, client: ClientDep, conn: AutocommitDep) -> Response:
    row = await event_store.find_event(conn, client.id, event_id)
    if row is None:
        raise no_such_event(event_id)
    return json_response(_event_body(row))


def _event_body(row: event_store.EventRow) -> dict[str, Any]:
    # `data` is the task as it was when the event was written, already in its JSON form.
    return {"id": row.public_id, "type": row.type, "created_at": row.created_at, "data": row.data}
