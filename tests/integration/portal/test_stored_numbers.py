"""Accepted input never leads to a 5xx on a route that shows it back (issue 29, item 1): JSON
allows integers of any size, PostgreSQL's jsonb keeps them (and writes `1e20` back as
100000000000000000000), and orjson refuses integers beyond 64 bits. Once a task registered with
such metadata completed, its events feed answered 500 until retention removed the event."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.jsontext import compact_json
from tests.support.api import bearer, feed_until
from tests.support.factories import INSERT_EVENT, event_params

# The probe's body, and integers past both ends of 64 bits.
METADATA_TEXT = '{"x": 1e20, "big": 123456789012345678901234567890, "low": -99999999999999999999}'
BIG = 123456789012345678901234567890


async def completed_with_big_numbers(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession], task_id: str
) -> tuple[dict[str, Any], str]:
    """Register as the probe did, then record the task.completed event from the stored row, as
    the engine does (its data is the task as PostgreSQL gives it back)."""
    registered = await api.post(
        "/v1/tasks",
        content=f'{{"task_id": "{task_id}", "metadata": {METADATA_TEXT}}}',
        headers={**bearer(key), "content-type": "application/json"},
    )
    assert registered.status_code == 201, registered.text
    shown = await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))
    assert shown.status_code == 200, shown.text
    task: dict[str, Any] = json.loads(shown.text)
    params = {**event_params(key, {"task_id": task_id}), "data": compact_json(task)}
    async with sessions() as session, session.begin():
        await session.execute(text(INSERT_EVENT), params)
    return task, params["public_id"]


async def test_a_task_with_integers_beyond_64_bits_shows_on_every_route(
    api: httpx.AsyncClient,
    person: httpx.AsyncClient,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    task, event_id = await completed_with_big_numbers(api, key, sessions, "BIG-NUMBERS-1")
    assert task["metadata"] == {"x": 10**20, "big": BIG, "low": -99999999999999999999}

    page = await feed_until(api, key, 1)
    assert [event["id"] for event in page["data"]] == [event_id]
    event = await api.get(f"/v1/events/{event_id}", headers=bearer(key))
    assert event.status_code == 200, event.text
    # Exactly as stored: read with a parser that keeps big integers whole.
    assert json.loads(event.text)["data"]["metadata"]["big"] == BIG

    listed = await person.get("/portal/tasks")
    assert listed.status_code == 200, listed.text
    assert str(BIG)[:20] in listed.text  # the list shows the metadata's first 60 characters
    detail = await person.get("/portal/tasks/BIG-NUMBERS-1")
    assert detail.status_code == 200, detail.text
    assert f"&#34;big&#34;: {BIG}" in detail.text
