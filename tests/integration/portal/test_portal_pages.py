"""What a person reads on the portal's pages, beyond what each page does: the icon every page
names, the overview's time axis with its day, a PENDING poll read as "not ready yet", and the
recover form asking for its window before its buttons."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.store.db import transaction
from tests.support.factories import register_task


async def test_every_page_names_an_icon_the_api_serves(person: httpx.AsyncClient) -> None:
    page = await person.get("/portal")
    assert page.status_code == 200
    icon = re.search(r'<link rel="icon" type="image/png" href="([^"]+)">', page.text)
    assert icon is not None, page.text
    served = await person.get(icon.group(1))
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"


async def test_the_overview_axis_says_the_day_of_its_ends(person: httpx.AsyncClient) -> None:
    page = (await person.get("/portal")).text
    today = datetime.now(UTC)
    ends = re.findall(r'class="tick(?: end)?">([^<]+)</text>', page)
    assert ends, page
    for label in ends:
        assert re.fullmatch(r"[A-Z][a-z]{2} \d{1,2} \d\d:00 UTC", label), label
    assert f"{today:%b} {today.day} {today:%H}:00 UTC" in ends


async def test_a_pending_poll_reads_not_ready_yet_not_as_an_http_error(
    person: httpx.AsyncClient,
    api: httpx.AsyncClient,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_task(api, key, "T-pending-story")
    poll = {
        "at": datetime.now(UTC).isoformat(),
        "code": "PENDING",
        "status": 400,
        "request_id": "req-1",
        "latency_ms": 12,
    }
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE tasks SET poll_history = CAST(:history AS jsonb), poll_count = 1 "
                "WHERE task_id = 'T-pending-story'"
            ),
            {"history": json.dumps([poll])},
        )

    story = (await person.get("/portal/tasks/T-pending-story")).text
    assert "poll: PENDING" in story
    assert "not ready yet, 12 ms" in story
    assert "HTTP 400" not in story


async def test_the_recover_form_asks_for_its_window_before_its_buttons(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str
) -> None:
    created = await api.post(
        "/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/hook"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert created.status_code == 201, created.text
    page = (await person.get("/portal/deliveries")).text
    assert page.index('name="since"') < page.index("Recover this one"), page
    assert page.index('name="until"') < page.index("Recover this one"), page


async def _complete(
    sessions: async_sessionmaker[AsyncSession], task_id: str, phone_status: str
) -> None:
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE tasks SET state = 'completed', completed_at = now(), next_poll_at = NULL,"
                " result = jsonb_build_object("
                "'phone_number', '0062****', 'phone_status', CAST(:s AS text))"
                " WHERE task_id = :t"
            ),
            {"t": task_id, "s": phone_status},
        )


def _row_of(page: str, task_id: str) -> str:
    row = re.search(rf">{task_id}</a></td>.*?</tr>", page, re.S)
    assert row is not None, page
    return row.group(0)


async def test_the_task_pages_show_the_verdict_beside_the_status(
    person: httpx.AsyncClient,
    api: httpx.AsyncClient,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for task_id, phone_status in (("T-v-busy", "busy"), ("T-v-odd", "voicemail")):
        await register_task(api, key, task_id)
        await _complete(sessions, task_id, phone_status)
    await register_task(api, key, "T-v-pending")

    listed = (await person.get("/portal/tasks")).text
    assert 'verdict-live">live</span><span class="phone-status">busy</span>' in _row_of(
        listed, "T-v-busy"
    )
    assert 'verdict-none">no verdict</span><span class="phone-status">voicemail</span>' in (
        _row_of(listed, "T-v-odd")
    )
    assert '<td class="result"></td>' in _row_of(listed, "T-v-pending")

    story = (await person.get("/portal/tasks/T-v-busy")).text
    assert 'verdict-live">live</span> <span class="phone-status">busy</span>' in story
    assert "phone_status busy, verdict live" in story
    odd_story = (await person.get("/portal/tasks/T-v-odd")).text
    assert "phone_status voicemail, no verdict" in odd_story
