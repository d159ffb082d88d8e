"""The events feed (this client's events, oldest first) and one event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.public_ids import is_public_id_shaped
from service.features.errors import BrokenRule, InvalidInput
from service.features.ids import no_such_event, require_event_id
from service.store import events as event_store
from service.store.events import EventRow

__all__ = ["EventRow", "Feed"]


@dataclass(frozen=True, slots=True)
class Feed:
    events: Sequence[EventRow]
    # The event id to read on from, or None at the end of the feed for now.
    next_after: str | None


async def read_feed(conn: AsyncConnection, client_id: int, *, after: str | None, size: int) -> Feed:
    """Up to `size` of the client's events after the event `after` (from the oldest without it).
    InvalidInput when `after` is not one of the client's events."""
    position = None
    if after is not None:
        if is_public_id_shaped(after):
            position = await event_store.find_feed_position(conn, client_id, after)
        if position is None:
            raise InvalidInput(
                "after must be the id of one of this client's events",
                [BrokenRule("query.after", "unknown event id")],
            )
    rows = await event_store.list_settled_events(conn, client_id, after=position, limit=size)
    # A full page may have a successor; a short one is the end of the feed for now.
    return Feed(rows, rows[-1].public_id if len(rows) == size else None)


async def find_event(conn: AsyncConnection, client_id: int, event_id: str) -> EventRow:
    row = await event_store.find_event(conn, client_id, require_event_id(event_id))
    if row is None:
        raise no_such_event(event_id)
    return row
