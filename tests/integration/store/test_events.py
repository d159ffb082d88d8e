"""The events' read side (service/store/events.py): a client's feed, oldest first, resumed after
an event it has read, and nothing of another client's."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.store.events import find_event, find_feed_position, list_settled_events
from tests.support.factories import emit_event, insert_client


async def test_the_feed_lists_a_clients_events_oldest_first_and_resumes_after_one(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id = await insert_client(sessions)
    other_id = await insert_client(sessions)
    emitted = [await emit_event(sessions, client_id) for _ in range(3)]
    await settled(engine, client_id, len(emitted))

    async with engine.connect() as conn:
        feed = await list_settled_events(conn, client_id, after=None, limit=10)
        second = await find_feed_position(conn, client_id, emitted[1])
        rest = await list_settled_events(conn, client_id, after=second, limit=10)
        others = await list_settled_events(conn, other_id, after=None, limit=10)
        not_theirs = await find_event(conn, other_id, emitted[0])
        mine = await find_event(conn, client_id, emitted[0])

    assert [event.public_id for event in feed] == emitted
    assert [event.public_id for event in rest] == emitted[2:]
    assert others == []
    assert not_theirs is None
    assert mine is not None
    assert mine.type == "task.completed"


async def settled(engine: AsyncEngine, client_id: int, count: int, timeout_s: float = 10.0) -> None:
    """Wait until the feed shows `count` events: it shows only those older than every running
    transaction of the server (pg_snapshot_xmin), including other databases' (the other test
    workers'), so a long transaction elsewhere holds them back for a moment."""
    async with asyncio.timeout(timeout_s):
        while True:
            async with engine.connect() as conn:
                shown = await list_settled_events(conn, client_id, after=None, limit=count)
            if len(shown) >= count:
                return
            await asyncio.sleep(0.05)
