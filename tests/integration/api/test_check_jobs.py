"""/v1/check-jobs through the API: creation from JSON and CSV with the issue's whole "bad input"
list (each a clear 4xx naming the line or field, nothing half-created), drafts and their cost,
the client's moves and their 409s, isolation, the Idempotency-Key, rejections, and results in
input order as JSON pages, CSV (with the formula guard) and NDJSON."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.check_job_models import CSV_MEDIA_TYPE, NDJSON_MEDIA_TYPE
from service.domain.job_input import JOB_BODY_MAX_BYTES, JOB_ITEMS_MAX
from service.store.db import transaction
from tests.support.api import bearer
from tests.support.jobs import (
    all_results,
    create_csv_job,
    create_json_job,
    csv_body,
    get_job,
    job_move,
    mx_number,
)


async def job_rows(sessions: async_sessionmaker[AsyncSession], client_key: str) -> int:
    """Jobs of every client: nothing half-created means none at all for the test's key."""
    async with transaction(sessions) as session:
        return int((await session.execute(text("SELECT count(*) FROM check_jobs"))).scalar_one())


def draft(*numbers: str, **extra: Any) -> dict[str, Any]:
    return {"items": [{"phone_number": n} for n in numbers], "start": False, **extra}


async def test_a_json_draft_shows_its_cost_and_submits_nothing(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = {
        "name": "november book",
        "start": False,
        "items": [
            {"phone_number": mx_number(1), "reference": "a"},
            {"phone_number": "not a number", "reference": "b"},
            {"phone_number": mx_number(2), "metadata": {"loan": 7}},
            {"phone_number": "+52 1 55 0000 0001", "reference": "a-again"},
        ],
    }
    response = await create_json_job(api, key, body)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["id"].startswith("job_")
    assert (job["state"], job["paused_reason"], job["name"]) == ("draft", None, "november book")
    assert job["started_at"] is None
    assert job["estimated_finish_at"] is None
    counts = job["counts"]
    assert (counts["items"], counts["rejected"], counts["duplicates"], counts["cached"]) == (
        4,
        1,
        1,
        0,
    )
    assert counts["to_submit"] == 2
    assert counts["submitted"] == 0
    async with transaction(sessions) as session:
        states = (
            await session.execute(
                text(
                    "SELECT s.state, s.phone_number_sealed IS NOT NULL FROM scheduled_submits s "
                    "JOIN check_jobs j ON j.id = s.job_pk WHERE j.public_id = :id"
                ),
                {"id": job["id"]},
            )
        ).all()
    assert sorted(tuple(row) for row in states) == [("standby", True), ("standby", True)]


async def test_a_csv_job_with_bom_crlf_and_quoted_commas_is_read_by_line(
    api: httpx.AsyncClient, key: str
) -> None:
    body = (
        "\ufeffPhone_Number,reference,notes\r\n"
        f'"{mx_number(3)}","ref, with comma",x\r\n'
        "12,bad,y\r\n"
        f"{mx_number(4)},=HYPERLINK(1),z\r\n"
    ).encode()
    response = await create_csv_job(api, key, body, "?start=false&name=sheet")
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["name"] == "sheet"
    assert job["counts"]["rejected"] == 1
    rejections = await api.get(f"/v1/check-jobs/{job['id']}/rejections", headers=bearer(key))
    assert rejections.status_code == 200
    [rejection] = rejections.json()["data"]
    assert (rejection["line"], rejection["reference"]) == (2, "bad")
    assert "phone_number" in rejection["detail"]
    rows = await all_results(api, key, job["id"])
    assert [(r["line"], r["reference"], r["state"]) for r in rows] == [
        (1, "ref, with comma", "waiting"),
        (3, "=HYPERLINK(1)", "waiting"),
    ]
    assert rows[0]["phone_number_masked"] == "52******0003"


@pytest.mark.parametrize(
    ("body", "field_or_words"),
    [
        (b"number,reference\r\n+52 55 0000 0001,a\r\n", "no phone_number column"),
        (b"phone_number,reference\r\n", "header row but no items"),
        (b"phone_number\r\n+52 55 0000 0001\r\n\xff\xfe\r\n", "line 2"),
    ],
    ids=["no-phone-number-column", "header-only", "not-utf8"],
)
async def test_a_csv_that_cannot_make_a_job_is_422_naming_what_is_wrong(
    api: httpx.AsyncClient,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
    body: bytes,
    field_or_words: str,
) -> None:
    before = await job_rows(sessions, key)
    response = await create_csv_job(api, key, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field_or_words in response.json()["detail"]
    assert await job_rows(sessions, key) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"phone_number": mx_number(1)}], None),
        ({"numbers": [mx_number(1)]}, "numbers"),
        ({"items": "+52 55 0000 0001"}, "items"),
        ({"items": [{"phone_number": mx_number(1)}], "max_age_s": 2_592_001}, "max_age_s"),
        ({"items": [{"phone_number": mx_number(1)}], "max_age_s": -1}, "max_age_s"),
        ({"items": [{"phone_number": "12"}]}, "items"),
    ],
    ids=["array", "other-field", "items-not-array", "max-age-high", "max-age-negative", "none-ok"],
)
async def test_a_json_body_that_cannot_make_a_job_is_422_naming_the_field(
    api: httpx.AsyncClient,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
    body: object,
    field: str | None,
) -> None:
    before = await job_rows(sessions, key)
    response = await create_json_job(api, key, body)  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
    problem = response.json()
    if field is not None:
        assert any(field in (error["field"] or "") for error in problem["errors"]), problem
    assert await job_rows(sessions, key) == before


async def test_max_age_s_out_of_range_in_a_csv_query_is_422(
    api: httpx.AsyncClient, key: str
) -> None:
    response = await create_csv_job(api, key, csv_body([(mx_number(1), "a")]), "?max_age_s=-5")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.max_age_s"


async def test_more_than_100000_items_is_422_and_more_than_16_mib_is_413(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = await job_rows(sessions, key)
    many = "phone_number\n" + "\n".join(mx_number(i) for i in range(JOB_ITEMS_MAX + 1)) + "\n"
    response = await create_csv_job(api, key, many.encode())
    assert response.status_code == 422, response.text
    assert "100000" in response.json()["detail"]
    large = b"phone_number\n" + b"5" * (JOB_BODY_MAX_BYTES - len(b"phone_number\n") + 1)
    assert len(large) == JOB_BODY_MAX_BYTES + 1
    response = await create_csv_job(api, key, large)
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "BODY_TOO_LARGE"

    async def chunks() -> Any:
        for start in range(0, len(large), 1 << 20):
            yield large[start : start + (1 << 20)]

    streamed = await api.post(
        "/v1/check-jobs",
        content=chunks(),
        headers={**bearer(key), "Content-Type": "text/csv"},
    )
    assert streamed.status_code == 413
    assert await job_rows(sessions, key) == before


async def test_a_body_neither_json_nor_csv_is_415(api: httpx.AsyncClient, key: str) -> None:
    response = await api.post(
        "/v1/check-jobs",
        content=b"phone_number\n",
        headers={**bearer(key), "Content-Type": "text/plain"},
    )
    assert response.status_code == 415


async def test_moves_follow_the_lifecycle_and_refuse_with_409_and_the_reason(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    job = (await create_json_job(api, key, draft(mx_number(1), mx_number(2)))).json()
    job_id = job["id"]
    refused = await job_move(api, key, job_id, "pause")
    assert refused.status_code == 409
    assert refused.json()["code"] == "CONFLICT"
    assert "draft" in refused.json()["detail"]

    started = await job_move(api, key, job_id, "start")
    assert started.status_code == 200
    assert started.json()["state"] == "queued"
    assert started.json()["started_at"] is not None
    again = await job_move(api, key, job_id, "start")
    assert again.status_code == 409
    assert "already started" in again.json()["detail"]

    paused = await job_move(api, key, job_id, "pause")
    assert (paused.json()["state"], paused.json()["paused_reason"]) == ("paused", "client")
    assert await submit_states(sessions, job_id) == ["standby", "standby"]
    resumed = await job_move(api, key, job_id, "resume")
    assert resumed.json()["state"] == "running"
    assert await submit_states(sessions, job_id) == ["waiting", "waiting"]

    cancelled = await job_move(api, key, job_id, "cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["finished_at"]
    assert await submit_states(sessions, job_id) == ["done", "done"]
    rows = await all_results(api, key, job_id)
    assert [row["state"] for row in rows] == ["not_submitted", "not_submitted"]
    twice = await job_move(api, key, job_id, "cancel")
    assert twice.status_code == 409
    assert "cancelled" in twice.json()["detail"]
    async with transaction(sessions) as session:
        erased, events = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM scheduled_submits s WHERE s.job_pk = j.id "
                    "        AND s.phone_number_sealed IS NOT NULL), "
                    "       (SELECT count(*) FROM events e WHERE e.job_pk = j.id) "
                    "FROM check_jobs j WHERE j.public_id = :id"
                ),
                {"id": job_id},
            )
        ).one()
    assert erased == 0
    assert events == 1  # nothing was pending: its job.completed at once


async def submit_states(sessions: async_sessionmaker[AsyncSession], job_id: str) -> list[str]:
    async with transaction(sessions) as session:
        rows = await session.execute(
            text(
                "SELECT s.state FROM scheduled_submits s JOIN check_jobs j ON j.id = s.job_pk "
                "WHERE j.public_id = :id ORDER BY s.job_line"
            ),
            {"id": job_id},
        )
        return [str(row[0]) for row in rows]


async def test_another_clients_job_is_404_everywhere(
    api: httpx.AsyncClient, key: str, other_key: str
) -> None:
    job_id = (await create_json_job(api, key, draft(mx_number(1)))).json()["id"]
    for path in ("", "/rejections", "/results"):
        response = await api.get(f"/v1/check-jobs/{job_id}{path}", headers=bearer(other_key))
        assert response.status_code == 404, path
    response = await api.get(
        f"/v1/check-jobs/{job_id}/results", headers={**bearer(other_key), "Accept": CSV_MEDIA_TYPE}
    )
    assert response.status_code == 404
    for move in ("start", "pause", "resume", "cancel"):
        assert (await job_move(api, other_key, job_id, move)).status_code == 404
    listed = await api.get("/v1/check-jobs", headers=bearer(other_key))
    assert listed.json()["data"] == []
    assert (await get_job(api, key, job_id))["state"] == "draft"


async def test_the_same_idempotency_key_answers_the_job_and_another_body_is_422(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = draft(mx_number(1), mx_number(2))
    first = await create_json_job(api, key, body, **{"Idempotency-Key": "book-1"})
    assert first.status_code == 201
    await job_move(api, key, first.json()["id"], "start")
    before = await job_rows(sessions, key)
    again = await create_json_job(api, key, body, **{"Idempotency-Key": "book-1"})
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["state"] == "queued"  # as it is now
    other = await create_json_job(api, key, draft(mx_number(3)), **{"Idempotency-Key": "book-1"})
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    assert await job_rows(sessions, key) == before


async def test_jobs_are_listed_newest_first_by_state_and_paged(
    api: httpx.AsyncClient, key: str
) -> None:
    ids = [(await create_json_job(api, key, draft(mx_number(i)))).json()["id"] for i in range(3)]
    await job_move(api, key, ids[1], "start")
    listed = await api.get("/v1/check-jobs?limit=2", headers=bearer(key))
    page = listed.json()
    assert [job["id"] for job in page["data"]] == [ids[2], ids[1]]
    rest = await api.get(
        f"/v1/check-jobs?limit=2&cursor={page['next_cursor']}", headers=bearer(key)
    )
    assert [job["id"] for job in rest.json()["data"]] == [ids[0]]
    drafts = await api.get("/v1/check-jobs?state=draft", headers=bearer(key))
    assert [job["id"] for job in drafts.json()["data"]] == [ids[2], ids[0]]
    unknown = await api.get("/v1/check-jobs?state=done", headers=bearer(key))
    assert unknown.status_code == 422


async def test_results_come_in_input_order_as_pages_csv_and_ndjson(
    api: httpx.AsyncClient, key: str
) -> None:
    items = [
        {"phone_number": mx_number(5), "reference": "=SUM(A1)"},
        {"phone_number": mx_number(6), "reference": "+plain"},
        {"phone_number": mx_number(5), "reference": "@dup"},
        {"phone_number": mx_number(7), "reference": "ok"},
    ]
    job_id = (await create_json_job(api, key, {"items": items, "start": False})).json()["id"]
    pages = await all_results(api, key, job_id)
    assert [row["line"] for row in pages] == [1, 2, 3, 4]
    assert [row["state"] for row in pages] == ["waiting"] * 4
    assert pages[2]["phone_number_masked"] == pages[0]["phone_number_masked"]

    as_csv = await api.get(
        f"/v1/check-jobs/{job_id}/results", headers={**bearer(key), "Accept": CSV_MEDIA_TYPE}
    )
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    records = list(csv.reader(io.StringIO(as_csv.text)))
    assert records[0][:3] == ["line", "reference", "phone_number_masked"]
    assert [record[1] for record in records[1:]] == ["'=SUM(A1)", "'+plain", "'@dup", "ok"]

    as_ndjson = await api.get(
        f"/v1/check-jobs/{job_id}/results",
        headers={**bearer(key), "Accept": NDJSON_MEDIA_TYPE},
    )
    assert as_ndjson.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in as_ndjson.content.splitlines()]
    assert lines == pages  # values as given: no guard for programs
