"""service.features.events: one event, and the feed's refusal of an unknown position."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.features import events
from service.features.errors import InvalidInput, NotFound
from tests.support.factories import emit_event, insert_client


async def test_an_event_is_found_by_its_client_only(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], client_id: int
) -> None:
    event_id = await emit_event(sessions, client_id)
    stranger = await insert_client(sessions)

    async with engine.connect() as conn:
        assert (await events.find_event(conn, client_id, event_id)).public_id == event_id
        with pytest.raises(NotFound, match="for this client"):
            await events.find_event(conn, stranger, event_id)


@pytest.mark.parametrize("after", ["evt_unknown", "not an id", "evt_\x00"])
async def test_the_feed_refuses_a_position_that_is_not_one_of_the_clients_events(
    engine: AsyncEngine, client_id: int, after: str
) -> None:
    async with engine.connect() as conn:
        with pytest.raises(InvalidInput) as refused:
            await events.read_feed(conn, client_id, after=after, size=10)
    assert [rule.field for rule in refused.value.broken] == ["query.after"]
