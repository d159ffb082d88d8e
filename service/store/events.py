"""The read side of events: the client's feed and single events. The engine writes them.

The feed is ordered by (tx_id, id), where tx_id is the id of the transaction that wrote the event,
and shows only events whose transaction is older than every transaction still running
(`pg_snapshot_xmin`). An event that commits late therefore appears after the events a client has
already read, never behind its cursor: the feed skips nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, ColumnClause, Row, Table, literal_column, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.jsontext import compact_json, parse_json
from service.domain.states import EventType
from service.domain.verdicts import with_verdict
from service.store.tables.webhooks import Event

events = cast(Table, Event.__table__)

# Named through the ORM class, so a misspelt column fails mypy, and the rows are typed tuples.
EVENT_COLUMNS = (Event.public_id, Event.type, Event.created_at, Event.data)


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event as the feed shows it; `data` is the task as it was when the event was written (its
    result's verdict derived from its phone_status when it was written without one)."""

    public_id: str
    type: EventType
    created_at: datetime
    data: dict[str, Any]


def _event(row: Row[str, EventType, datetime, dict[str, Any]]) -> EventRow:
    public_id, type_, created_at, data = row
    return EventRow(public_id=public_id, type=type_, created_at=created_at, data=with_verdict(data))


# An event written before results carried a verdict has a result without one: true for those
# (a SQL expression on the events row `alias`, so that only they are read and written again).
def lacks_verdict_sql(alias: str) -> str:
    return (
        f"(jsonb_typeof({alias}.data -> 'result') = 'object'"
        f" AND {alias}.data -> 'result' -> 'verdict' IS NULL)"
    )


def data_json_with_verdict(data_json: str, lacks_verdict: bool) -> str:
    """An event's data as JSON text, as it is sent: as stored, or, for an event written before
    results carried a verdict (`lacks_verdict`, from `lacks_verdict_sql`), with its verdict
    derived from its phone_status, as the feed shows it too."""
    if not lacks_verdict:
        return data_json
    return compact_json(with_verdict(parse_json(data_json)))


# Every transaction with a smaller id has ended (committed or rolled back).
_SETTLED_BELOW: ColumnClause[int] = literal_column(
    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint", BigInteger
)


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """Where an event sits in the feed's order."""

    tx_id: int
    id: int


async def find_feed_position(
    conn: AsyncConnection, client_id: int, public_id: str
) -> FeedPosition | None:
    """The feed position of one of this client's events, or None when it has no such event."""
    row = (
        await conn.execute(
            select(Event.tx_id, Event.id).where(
                Event.client_id == client_id, Event.public_id == public_id
            )
        )
    ).one_or_none()
    if row is None:
        return None
    tx_id, id_ = row
    return FeedPosition(tx_id=tx_id, id=id_)


async def list_settled_events(
    conn: AsyncConnection, client_id: int, *, after: FeedPosition | None, limit: int
) -> Sequence[EventRow]:
    """This client's events after `after`, oldest first, leaving out any whose writing
    transaction might still be overtaken by one that is running now."""
    statement = select(*EVENT_COLUMNS).where(
        events.c.client_id == client_id, events.c.tx_id < _SETTLED_BELOW
    )
    if after is not None:
        statement = statement.where(
            tuple_(events.c.tx_id, events.c.id) > tuple_(after.tx_id, after.id)
        )
    statement = statement.order_by(events.c.tx_id, events.c.id).limit(limit)
    return [_event(row) for row in await conn.execute(statement)]


async def find_event(conn: AsyncConnection, client_id: int, public_id: str) -> EventRow | None:
    statement = select(*EVENT_COLUMNS).where(
        events.c.client_id == client_id, events.c.public_id == public_id
    )
    row = (await conn.execute(statement)).one_or_none()
    return None if row is None else _event(row)
