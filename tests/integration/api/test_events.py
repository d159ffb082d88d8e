"""GET /v1/events (the feed, oldest first, never skipping an event that commits late) and
GET /v1/events/{id}. The engine writes events; here they are written as it would, in SQL."""

from __future__ import annotations

import secrets

import httpx
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.api import bearer, feed, feed_until
from tests.support.factories import INSERT_EVENT, event_params, insert_event, register_task


async def test_feed_is_empty_for_a_client_without_events(api: httpx.AsyncClient, key: str) -> None:
    assert await feed(api, key) == {"data": [], "next_cursor": None}


async def test_feed_lists_events_oldest_first_and_pages_with_after(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ids = [await insert_event(api, sessions, key, f"F-{n}") for n in range(5)]
    first = await feed_until(api, key, 2, "limit=2")
    assert [e["id"] for e in first["data"]] == ids[:2]
    assert first["next_cursor"] == ids[1]
    second = await feed(api, key, f"limit=2&after={first['next_cursor']}")
    assert [e["id"] for e in second["data"]] == ids[2:4]
    last = await feed(api, key, f"limit=2&after={second['next_cursor']}")
    assert [e["id"] for e in last["data"]] == ids[4:]
    assert last["next_cursor"] is None


async def test_event_has_the_contract_shape(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    event_id = await insert_event(api, sessions, key, "SHAPE-1")
    response = await api.get(f"/v1/events/{event_id}", headers=bearer(key))
    assert response.status_code == 200
    event = response.json()
    assert set(event) == {"id", "type", "created_at", "data"}
    assert event["id"] == event_id
    assert event["type"] == "task.completed"
    assert event["created_at"].endswith("Z")
    assert event["data"]["task_id"] == "SHAPE-1"
    page = await feed_until(api, key, 1)
    assert page["data"] == [event]


async def test_an_event_that_commits_late_is_not_skipped(
    api: httpx.AsyncClient,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    """A transaction that started first but commits last must still show up after the cursor."""
    early_task = await register_task(api, key, "LATE-early")
    early = event_params(key, early_task)
    sql = INSERT_EVENT.replace(":public_id", "%(public_id)s").replace(":data", "%(data)s")
    sql = sql.replace(":key_hash", "%(key_hash)s").replace(":task_id", "%(task_id)s")
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    async with await psycopg.AsyncConnection.connect(url) as slow:
        await slow.execute(sql, early)  # written, not yet committed

        later = await insert_event(api, sessions, key, "LATE-later")
        # The later event is committed, but a transaction older than it is still running:
        # showing it now would let a client's cursor pass the early one.
        assert await feed(api, key) == {"data": [], "next_cursor": None}

        await slow.commit()

    page = await feed_until(api, key, 2)
    assert [e["id"] for e in page["data"]] == [early["public_id"], later]


@pytest.mark.parametrize(
    "query",
    [
        "after=evt_0123456789abcdef0123456789abcdef",
        "after=",
        "after=%00",
        "after=" + "e" * 300,
        "after=evt_zz!",
        "limit=0",
        "limit=501",
        "limit=many",
    ],
)
async def test_bad_feed_parameters_answer_422(api: httpx.AsyncClient, key: str, query: str) -> None:
    response = await api.get(f"/v1/events?{query}", headers=bearer(key))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "event_id", ["evt_0123456789abcdef0123456789abcdef", "%00", "x" * 100, "evt-%FF"]
)
async def test_unknown_event_answers_404(api: httpx.AsyncClient, key: str, event_id: str) -> None:
    response = await api.get(f"/v1/events/{event_id}", headers=bearer(key))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_full_page_carries_a_cursor_even_at_the_end(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ids = [await insert_event(api, sessions, key, f"FULL-{secrets.token_hex(3)}") for _ in range(2)]
    page = await feed_until(api, key, 2, "limit=2")
    assert page["next_cursor"] == ids[-1]
    assert await feed(api, key, f"after={ids[-1]}") == {"data": [], "next_cursor": None}
