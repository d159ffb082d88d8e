"""POST /v1/tasks, POST /v1/tasks/batch, GET /v1/tasks[/{task_id}], DELETE /v1/tasks/{task_id}."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.resources import new_intake_pool
from service.config import Settings
from service.domain.intake import Registration, validate_registration
from service.domain.schemas import TaskOut
from service.store import tasks as task_store
from service.store.clients import find_active_key
from tests.support.api import bearer, json_bearer

PROBLEM = "application/problem+json"


def rfc3339(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse(text: str) -> datetime:
    assert text.endswith("Z"), f"{text} is not UTC"
    return datetime.fromisoformat(text)


def unique(prefix: str = "T") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


async def register(api: httpx.AsyncClient, key: str, **body: Any) -> httpx.Response:
    return await api.post("/v1/tasks", json=body, headers=bearer(key))


class CountingConnection(AsyncConnection[DictRow]):
    """A real connection that counts the statements it is asked to run."""

    statements: list[str]


class CountingCursor(AsyncCursor[Any]):
    """Counts on its connection every statement it runs: those of `conn.execute` and those of a
    cursor with its own row factory alike."""

    async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        assert isinstance(self.connection, CountingConnection)
        self.connection.statements.append(str(query).split()[0])
        return await super().execute(query, *args, **kwargs)


@asynccontextmanager
async def counting_connection(database_url: str) -> AsyncIterator[CountingConnection]:
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    conn = await CountingConnection.connect(
        url,
        autocommit=True,
        row_factory=dict_row,
        cursor_factory=CountingCursor,
        options="-c timezone=UTC",
    )
    conn.statements = []
    try:
        yield conn
    finally:
        await conn.close()


async def client_id_of(conn: CountingConnection, key: str) -> int:
    found = await find_active_key(conn, hashlib.sha256(key.encode()).digest())
    assert found is not None
    conn.statements.clear()
    return found.client_id


def registration(task_id: str, settings: Settings) -> Registration:
    checked = validate_registration(
        {"task_id": task_id}, now=datetime.now(UTC), ttl=timedelta(seconds=settings.task_ttl_s)
    )
    assert isinstance(checked, Registration)
    return checked


# --- registration ---------------------------------------------------------------------------


async def test_new_task_is_pending_due_now_and_valid_for_the_ttl(
    api: httpx.AsyncClient, key: str, settings: Settings
) -> None:
    before = datetime.now(UTC)
    response = await register(api, key, task_id="T-123", metadata={"order": "A-17", "ü": [1]})
    after = datetime.now(UTC)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    task = response.json()
    assert set(task) == {
        "task_id", "state", "result", "submitted_at", "registered_at", "expires_at",
        "completed_at", "next_poll_at", "poll_count", "last_error", "upstream_request_id",
        "metadata", "source", "phone_number_masked", "rechecks", "job_id",
    }  # fmt: skip
    assert task["task_id"] == "T-123"
    assert task["rechecks"] == []
    assert task["state"] == "pending"
    assert task["result"] is None
    assert task["completed_at"] is None
    assert task["last_error"] is None
    assert task["upstream_request_id"] is None
    assert task["poll_count"] == 0
    assert task["metadata"] == {"order": "A-17", "ü": [1]}
    submitted = parse(task["submitted_at"])
    assert before <= submitted <= after
    assert parse(task["registered_at"]) == submitted
    assert parse(task["next_poll_at"]) == parse(task["registered_at"])
    assert parse(task["expires_at"]) == submitted + timedelta(seconds=settings.task_ttl_s)


async def test_given_submitted_at_sets_the_deadline(
    api: httpx.AsyncClient, key: str, settings: Settings
) -> None:
    submitted = datetime.now(UTC) - timedelta(hours=3)
    local = submitted.astimezone(datetime.now().astimezone().tzinfo).isoformat()
    response = await register(api, key, task_id=unique(), submitted_at=local)
    assert response.status_code == 201
    task = response.json()
    assert parse(task["submitted_at"]) == submitted
    assert parse(task["expires_at"]) == submitted + timedelta(seconds=settings.task_ttl_s)


async def test_registering_the_same_task_id_again_returns_the_existing_task(
    api: httpx.AsyncClient, key: str
) -> None:
    task_id = unique()
    first = await register(api, key, task_id=task_id, metadata={"v": 1})
    again = await register(api, key, task_id=task_id, metadata={"v": 2})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()


async def test_concurrent_registrations_of_one_task_id_create_it_once(
    api: httpx.AsyncClient, key: str
) -> None:
    task_id = unique()
    responses = await asyncio.gather(*(register(api, key, task_id=task_id) for _ in range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["registered_at"] for r in responses}) == 1


async def test_a_large_integer_in_metadata_is_stored_and_echoed(
    api: httpx.AsyncClient, key: str
) -> None:
    response = await api.post(
        "/v1/tasks",
        content=b'{"task_id": "%s", "metadata": {"big": 18446744073709551615, "neg": -0.0}}'
        % unique().encode(),
        headers=json_bearer(key),
    )
    assert response.status_code == 201
    assert response.json()["metadata"]["big"] == 18446744073709551615


NOW_TEXT = rfc3339(datetime.now(UTC))

INVALID_REGISTRATIONS: list[tuple[str, bytes, str]] = [
    ("empty body", b"", "empty"),
    ("whitespace body", b"   ", "empty"),
    ("not JSON", b"{task_id: T}", "not valid JSON"),
    ("truncated JSON", b'{"task_id": "T"', "not valid JSON"),
    ("invalid UTF-8", b'{"task_id": "\xff\xfe"}', "not valid JSON"),
    ("lone surrogate", b'{"task_id": "T", "metadata": {"k": "\\ud800"}}', "not valid JSON"),
    ("nested past the parser's depth", b"[" * 5000 + b"]" * 5000, "not valid JSON"),
    ("number too large for a double", b'{"task_id": "T", "metadata": {"n": 1e400}}', "JSON"),
    ("NaN literal", b'{"task_id": "T", "metadata": {"n": NaN}}', "not valid JSON"),
    ("array body", b'["T"]', "JSON object"),
    ("string body", b'"T"', "JSON object"),
    ("null body", b"null", "JSON object"),
    ("missing task_id", b"{}", "task_id: is required"),
    ("null task_id", b'{"task_id": null}', "task_id: is required"),
    ("empty task_id", b'{"task_id": ""}', "task_id: must be 1-128"),
    ("long task_id", b'{"task_id": "%s"}' % (b"x" * 129), "task_id: must be 1-128"),
    ("space in task_id", b'{"task_id": "a b"}', "task_id: must be 1-128"),
    ("slash in task_id", b'{"task_id": "a/b"}', "task_id: must be 1-128"),
    ("NUL in task_id", b'{"task_id": "a\\u0000b"}', "task_id: must be 1-128"),
    ("numeric task_id", b'{"task_id": 123}', "task_id: must be a string"),
    ("huge numeric task_id", b'{"task_id": 123456789012345678901234567890}', "task_id"),
    ("object task_id", b'{"task_id": {"id": "T"}}', "task_id: must be a string"),
    ("naive submitted_at", b'{"task_id": "T", "submitted_at": "2026-01-01T00:00:00"}', "timezone"),
    ("date only", b'{"task_id": "T", "submitted_at": "2026-01-01"}', "submitted_at"),
    ("unix seconds", b'{"task_id": "T", "submitted_at": 1767225600}', "submitted_at"),
    ("NUL in submitted_at", b'{"task_id": "T", "submitted_at": "\\u0000"}', "submitted_at"),
    (
        "future submitted_at",
        b'{"task_id": "T", "submitted_at": "%s"}'
        % rfc3339(datetime.now(UTC) + timedelta(days=1)).encode(),
        "in the future",
    ),
    (
        "expired submitted_at",
        b'{"task_id": "T", "submitted_at": "%s"}'
        % rfc3339(datetime.now(UTC) - timedelta(days=2)).encode(),
        "older than the task validity",
    ),
    ("far future", b'{"task_id": "T", "submitted_at": "9999-12-31T23:59:59Z"}', "future"),
    ("array metadata", b'{"task_id": "T", "metadata": [1]}', "metadata: must be a JSON object"),
    ("string metadata", b'{"task_id": "T", "metadata": "x"}', "metadata: must be a JSON object"),
    ("NUL in metadata", b'{"task_id": "T", "metadata": {"k": "\\u0000"}}', "NUL"),
    ("NUL in metadata key", b'{"task_id": "T", "metadata": {"\\u0000": 1}}', "NUL"),
    (
        "metadata over 4 KiB",
        b'{"task_id": "T", "metadata": {"k": "%s"}}' % (b"a" * 4096),
        "at most 4096",
    ),
    (
        "metadata too deep",
        b'{"task_id": "T", "metadata": ' + b'{"a":' * 40 + b"{}" + b"}" * 40 + b"}",
        "deeper than 32",
    ),
    ("unknown field", b'{"task_id": "T", "metdata": {}}', "metdata: unknown field"),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [pytest.param(body, expected, id=name) for name, body, expected in INVALID_REGISTRATIONS],
)
async def test_invalid_registration_answers_422_problem_saying_why(
    api: httpx.AsyncClient, key: str, body: bytes, expected: str
) -> None:
    response = await api.post(
        "/v1/tasks", content=body, headers={**bearer(key), "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422
    assert problem["title"] == "Unprocessable Entity"
    assert problem["type"].startswith("urn:phonebridge:problem:")
    assert expected in problem["detail"]


async def test_submitted_at_within_clock_skew_is_accepted(api: httpx.AsyncClient, key: str) -> None:
    ahead = rfc3339(datetime.now(UTC) + timedelta(seconds=3))
    response = await register(api, key, task_id=unique(), submitted_at=ahead)
    assert response.status_code == 201


async def test_a_rejected_registration_stores_nothing(api: httpx.AsyncClient, key: str) -> None:
    task_id = unique()
    response = await register(api, key, task_id=task_id, metadata=[1])
    assert response.status_code == 422
    assert (await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))).status_code == 404


INTAKE_STATEMENTS: list[str] = []


class CountingIntakeConnection(asyncpg.Connection):  # generic in asyncpg-stubs only
    """A real asyncpg connection (the intake pool's kind) that notes in INTAKE_STATEMENTS the
    statements it is asked to run (register_task sends each with fetchrow)."""

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        INTAKE_STATEMENTS.append(query.split()[0])
        return await super().fetchrow(query, *args, **kwargs)


async def test_a_new_task_costs_one_statement_and_an_existing_one_two(
    key: str, settings: Settings, database_url: str
) -> None:
    async with counting_connection(database_url) as counting:
        client_id = await client_id_of(counting, key)
    pool = await new_intake_pool(settings, connection_class=CountingIntakeConnection)
    try:
        async with pool.acquire() as conn:
            entry = registration(unique(), settings)
            INTAKE_STATEMENTS.clear()
            _, created = await task_store.register_task(conn, client_id, entry, datetime.now(UTC))
            assert created
            assert INTAKE_STATEMENTS == ["INSERT"]
            INTAKE_STATEMENTS.clear()
            _, created = await task_store.register_task(conn, client_id, entry, datetime.now(UTC))
            assert not created
            assert INTAKE_STATEMENTS == ["INSERT", "SELECT"]
    finally:
        await pool.close()


# --- batch ------------------------------------------------------------------------------------


async def test_batch_keeps_valid_entries_and_reports_each_outcome_in_order(
    api: httpx.AsyncClient, key: str
) -> None:
    existing, new_a, new_b = unique(), unique(), unique()
    assert (await register(api, key, task_id=existing)).status_code == 201
    body = {
        "tasks": [
            {"task_id": new_a, "metadata": {"n": 1}},
            {"task_id": "bad id"},
            {"task_id": existing},
            {"task_id": 42},
            "not an object",
            {"task_id": new_a, "metadata": {"n": 2}},
            {"task_id": new_b, "submitted_at": "2020-01-01T00:00:00Z"},
            {"task_id": new_b},
            {"task_id": unique(), "extra": True},
        ]
    }
    response = await api.post("/v1/tasks/batch", json=body, headers=bearer(key))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["task_id"], r["outcome"]) for r in results] == [
        (new_a, "created"),
        ("bad id", "rejected"),
        (existing, "existing"),
        (None, "rejected"),
        (None, "rejected"),
        (new_a, "existing"),
        (new_b, "rejected"),
        (new_b, "created"),
        (body["tasks"][8]["task_id"], "rejected"),  # type: ignore[index]
    ]
    assert "detail" not in results[0]
    assert "task_id: must be 1-128" in results[1]["detail"]
    assert "task_id: must be a string" in results[3]["detail"]
    assert "JSON object" in results[4]["detail"]
    assert "older than the task validity" in results[6]["detail"]
    assert "extra: unknown field" in results[8]["detail"]

    stored = (await api.get(f"/v1/tasks/{new_a}", headers=bearer(key))).json()
    assert stored["metadata"] == {"n": 1}  # the first occurrence wins
    assert (await api.get(f"/v1/tasks/{new_b}", headers=bearer(key))).status_code == 200


async def test_a_batch_of_1000_is_one_statement(
    key: str, settings: Settings, database_url: str
) -> None:
    prefix = unique("B")
    entries = [registration(f"{prefix}-{n}", settings) for n in range(1000)]
    async with counting_connection(database_url) as conn:
        client_id = await client_id_of(conn, key)
        created = await task_store.register_tasks(conn, client_id, entries, datetime.now(UTC))
        assert created == {e.task_id for e in entries}
        assert conn.statements == ["INSERT"]
        conn.statements.clear()
        again = await task_store.register_tasks(conn, client_id, entries, datetime.now(UTC))
        assert again == set()
        assert conn.statements == ["INSERT"]


async def test_batch_of_1000_over_http_creates_them_all(api: httpx.AsyncClient, key: str) -> None:
    prefix = unique("H")
    tasks = [{"task_id": f"{prefix}-{n}", "metadata": {"n": n}} for n in range(1000)]
    response = await api.post("/v1/tasks/batch", json={"tasks": tasks}, headers=bearer(key))
    assert response.status_code == 200
    assert [r["outcome"] for r in response.json()["results"]] == ["created"] * 1000
    again = await api.post("/v1/tasks/batch", json={"tasks": tasks}, headers=bearer(key))
    assert [r["outcome"] for r in again.json()["results"]] == ["existing"] * 1000


async def test_overlapping_batches_at_once_create_each_task_exactly_once(
    api: httpx.AsyncClient, key: str
) -> None:
    ids = [unique("O") for _ in range(300)]
    batches = [
        {"tasks": [{"task_id": t} for t in (ids if n % 2 else list(reversed(ids)))]}
        for n in range(6)
    ]
    responses = await asyncio.gather(
        *(api.post("/v1/tasks/batch", json=b, headers=bearer(key)) for b in batches)
    )
    assert all(r.status_code == 200 for r in responses)
    created = [
        r["task_id"]
        for response in responses
        for r in response.json()["results"]
        if r["outcome"] == "created"
    ]
    assert sorted(created) == sorted(ids)


@pytest.mark.parametrize(
    "body",
    [
        b'{"tasks": {}}',
        b'{"tasks": "T"}',
        b'{"tasks": null}',
        b'{"task": []}',
        b'{"tasks": [], "extra": 1}',
        b"[]",
        b'[{"task_id": "T"}]',
        b"{",
        b"",
        b'{"tasks": [' + b",".join([b'{"task_id": "T"}'] * 1001) + b"]}",
    ],
    ids=[
        "object",
        "string",
        "null",
        "misspelt",
        "extra field",
        "bare array",
        "bare array of tasks",
        "not JSON",
        "empty",
        "1001 entries",
    ],
)
async def test_batch_body_that_is_not_tasks_list_answers_422(
    api: httpx.AsyncClient, key: str, body: bytes
) -> None:
    response = await api.post("/v1/tasks/batch", content=body, headers=json_bearer(key))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"]


async def test_empty_batch_answers_empty_results(api: httpx.AsyncClient, key: str) -> None:
    response = await api.post("/v1/tasks/batch", json={"tasks": []}, headers=bearer(key))
    assert response.status_code == 200
    assert response.json() == {"results": []}


async def test_batch_entries_are_stored_exactly_as_single_registrations_are(
    api: httpx.AsyncClient, key: str
) -> None:
    # The batch reaches Postgres as one JSON document: text that needs escaping in it, and
    # submitted_at to the microsecond in any offset, must come back unchanged.
    metadata = {
        "quote": 'say "hi"',
        "backslash": "a\\b\\u0000c",
        "controls": "line\nbreak\ttab\u001f",
        "unicode": "ü 漢字 😀 \u2028",
        "numbers": [18446744073709551615, -0.0, 1.5e-7, 0],
        "nested": {"a": [{"b": None, "c": True}]},
    }
    submitted_at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=123456)
    offset = timezone(timedelta(hours=-3, minutes=-30))
    single, batched = unique("S"), unique("B")
    entry = {"metadata": metadata, "submitted_at": submitted_at.astimezone(offset).isoformat()}

    assert (await register(api, key, task_id=single, **entry)).status_code == 201
    response = await api.post(
        "/v1/tasks/batch", json={"tasks": [{"task_id": batched, **entry}]}, headers=bearer(key)
    )
    assert response.json()["results"] == [{"task_id": batched, "outcome": "created"}]

    one = (await api.get(f"/v1/tasks/{single}", headers=bearer(key))).json()
    other = (await api.get(f"/v1/tasks/{batched}", headers=bearer(key))).json()
    assert other["metadata"] == metadata
    assert parse(other["submitted_at"]) == submitted_at
    for field in ("metadata", "submitted_at", "expires_at", "state", "poll_count"):
        assert other[field] == one[field], field


# --- reading and listing ------------------------------------------------------------------------


async def test_get_returns_the_task_as_registered(api: httpx.AsyncClient, key: str) -> None:
    created = (await register(api, key, task_id="a.b:c_d-9")).json()
    response = await api.get("/v1/tasks/a.b:c_d-9", headers=bearer(key))
    assert response.status_code == 200
    assert response.json() == created


async def test_a_finished_task_reads_exactly_as_the_shared_task_schema_renders_it(
    api: httpx.AsyncClient,
    key: str,
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    # The task routes build their JSON by hand for speed; webhooks and events use TaskOut. The
    # two must agree to the character, including whole-second timestamps and nested objects.
    task_id = unique()
    await register(api, key, task_id=task_id, metadata={"order": "A-17"})
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE tasks SET state = 'completed', poll_count = 3,"
                " upstream_request_id = 'TID1', next_poll_at = NULL,"
                " completed_at = date_trunc('second', now()),"
                " result = CAST(:result AS jsonb), last_error = CAST(:error AS jsonb)"
                " WHERE task_id = :task_id"
            ),
            {
                "task_id": task_id,
                "result": '{"phone_number": "0062********", "phone_status": "ring"}',
                "error": '{"code": "INTERNAL_ERROR", "message": "upstream 500",'
                ' "at": "2026-01-31T09:30:00+00:00"}',
            },
        )
    response = await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))
    async with counting_connection(database_url) as conn:
        client_id = await client_id_of(conn, key)
        row = await task_store.find_task(conn, client_id, task_id)
    assert row is not None
    assert response.json() == TaskOut.model_validate(row).model_dump(mode="json")
    assert response.json()["last_error"]["at"] == "2026-01-31T09:30:00Z"
    assert response.json()["result"]["verdict"] == "live"


@pytest.mark.parametrize(
    "path",
    ["/v1/tasks/unknown", "/v1/tasks/%00", "/v1/tasks/%FF%FE", "/v1/tasks/" + "x" * 5000],
)
async def test_get_of_a_task_that_does_not_exist_answers_404(
    api: httpx.AsyncClient, key: str, path: str
) -> None:
    response = await api.get(path, headers=bearer(key))
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_list_is_newest_first_with_a_cursor_to_the_next_page(
    api: httpx.AsyncClient, key: str
) -> None:
    ids = [f"L-{n}" for n in range(5)]
    for task_id in ids:
        assert (await register(api, key, task_id=task_id)).status_code == 201
    first = (await api.get("/v1/tasks?limit=2", headers=bearer(key))).json()
    assert [t["task_id"] for t in first["data"]] == ["L-4", "L-3"]
    second = (
        await api.get(f"/v1/tasks?limit=2&cursor={first['next_cursor']}", headers=bearer(key))
    ).json()
    assert [t["task_id"] for t in second["data"]] == ["L-2", "L-1"]
    last = (
        await api.get(f"/v1/tasks?limit=2&cursor={second['next_cursor']}", headers=bearer(key))
    ).json()
    assert [t["task_id"] for t in last["data"]] == ["L-0"]
    assert last["next_cursor"] is None


async def test_a_page_that_ends_the_list_exactly_has_no_cursor(
    api: httpx.AsyncClient, key: str
) -> None:
    for n in range(3):
        await register(api, key, task_id=f"E-{n}")
    page = (await api.get("/v1/tasks?limit=3", headers=bearer(key))).json()
    assert len(page["data"]) == 3
    assert page["next_cursor"] is None


async def test_list_default_limit_is_50(api: httpx.AsyncClient, key: str) -> None:
    tasks = [{"task_id": f"D-{n}"} for n in range(60)]
    await api.post("/v1/tasks/batch", json={"tasks": tasks}, headers=bearer(key))
    page = (await api.get("/v1/tasks", headers=bearer(key))).json()
    assert len(page["data"]) == 50
    assert page["next_cursor"] is not None


async def test_list_filters_by_state(api: httpx.AsyncClient, key: str) -> None:
    for task_id in ("S-1", "S-2", "S-3"):
        await register(api, key, task_id=task_id)
    await api.delete("/v1/tasks/S-2", headers=bearer(key))
    cancelled = (await api.get("/v1/tasks?state=cancelled", headers=bearer(key))).json()
    pending = (await api.get("/v1/tasks?state=pending", headers=bearer(key))).json()
    assert [t["task_id"] for t in cancelled["data"]] == ["S-2"]
    assert [t["task_id"] for t in pending["data"]] == ["S-3", "S-1"]
    assert (await api.get("/v1/tasks?state=completed", headers=bearer(key))).json() == {
        "data": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "query.limit"),
        ("limit=501", "query.limit"),
        ("limit=-1", "query.limit"),
        ("limit=abc", "query.limit"),
        ("limit=1.5", "query.limit"),
        ("limit=99999999999999999999999999", "query.limit"),
        ("limit=", "query.limit"),
        ("state=done", "query.state"),
        ("state=", "query.state"),
        ("state=%00", "query.state"),
        ("cursor=garbage!", "query.cursor"),
        ("cursor=cjo", "query.cursor"),  # "r:" without a row id
        ("cursor=cjow", "query.cursor"),  # "r:0"
        ("cursor=cjowMQ", "query.cursor"),  # "r:01"
        ("cursor=eDo1", "query.cursor"),  # "x:5"
        ("cursor=%00", "query.cursor"),
        ("cursor=" + "A" * 300, "query.cursor"),
        ("cursor=cjo5OTk5OTk5OTk5OTk5OTk5OTk5OQ", "query.cursor"),  # past the largest row id
    ],
)
async def test_bad_list_parameters_answer_422_naming_the_parameter(
    api: httpx.AsyncClient, key: str, query: str, field: str
) -> None:
    response = await api.get(f"/v1/tasks?{query}", headers=bearer(key))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_paging_while_others_register_neither_skips_nor_repeats(
    api: httpx.AsyncClient, key: str
) -> None:
    tasks = [{"task_id": f"P-{n:03}"} for n in range(120)]
    await api.post("/v1/tasks/batch", json={"tasks": tasks}, headers=bearer(key))
    originals = {t["task_id"] for t in tasks}
    paging_done = asyncio.Event()

    async def keep_registering() -> int:
        count = 0
        while not paging_done.is_set():
            batch = [{"task_id": f"N-{count + i}"} for i in range(5)]
            await api.post("/v1/tasks/batch", json={"tasks": batch}, headers=bearer(key))
            count += 5
            await asyncio.sleep(0)
        return count

    async def page_through() -> list[str]:
        seen: list[str] = []
        cursor = None
        try:
            while True:
                query = "limit=7" + (f"&cursor={cursor}" if cursor else "")
                page = (await api.get(f"/v1/tasks?{query}", headers=bearer(key))).json()
                seen.extend(t["task_id"] for t in page["data"])
                cursor = page["next_cursor"]
                if cursor is None:
                    return seen
        finally:
            paging_done.set()

    inserted, seen = await asyncio.gather(keep_registering(), page_through())
    assert inserted > 0
    assert len(seen) == len(set(seen)), "a task was listed twice"
    assert originals <= set(seen), "a task that existed before paging began was skipped"


# --- cancel -------------------------------------------------------------------------------------


async def test_cancel_stops_a_pending_task(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    task_id = unique()
    await register(api, key, task_id=task_id)
    lease = uuid.uuid4()
    async with sessions() as session, session.begin():
        # As if a worker had claimed the task just before the cancel.
        await session.execute(
            text(
                "UPDATE tasks SET lease_token = :lease, lease_until = now() + interval '1 minute' "
                "WHERE task_id = :task_id"
            ),
            {"lease": lease, "task_id": task_id},
        )
    before = datetime.now(UTC)
    response = await api.delete(f"/v1/tasks/{task_id}", headers=bearer(key))
    assert response.status_code == 200
    task = response.json()
    assert task["state"] == "cancelled"
    assert task["next_poll_at"] is None
    assert parse(task["completed_at"]) >= before
    assert (await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))).json() == task

    async with sessions() as session, session.begin():
        row = (
            await session.execute(
                text("SELECT lease_token, lease_until FROM tasks WHERE task_id = :t"),
                {"t": task_id},
            )
        ).one()
        assert row.lease_token is None
        assert row.lease_until is None
        # A worker's write-back, which requires a pending task, now changes nothing.
        written = await session.execute(
            text(
                "UPDATE tasks SET state = 'completed' WHERE task_id = :t AND state = 'pending' "
                "AND lease_token = :lease"
            ),
            {"t": task_id, "lease": lease},
        )
        assert written.rowcount == 0  # type: ignore[attr-defined]


async def test_cancel_of_a_final_task_answers_409(
    api: httpx.AsyncClient, key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cancelled, completed = unique(), unique()
    for task_id in (cancelled, completed):
        await register(api, key, task_id=task_id)
    await api.delete(f"/v1/tasks/{cancelled}", headers=bearer(key))
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE tasks SET state = 'completed', completed_at = now(), next_poll_at = NULL, "
                'result = \'{"phone_number": "0062****", "phone_status": "ring"}\' '
                "WHERE task_id = :t"
            ),
            {"t": completed},
        )
    for task_id, state in ((cancelled, "cancelled"), (completed, "completed")):
        response = await api.delete(f"/v1/tasks/{task_id}", headers=bearer(key))
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM
        assert f"already {state}" in response.json()["detail"]
    finished = (await api.get(f"/v1/tasks/{completed}", headers=bearer(key))).json()
    assert finished["state"] == "completed"
    assert finished["result"] == {
        "phone_number": "0062****",
        "phone_status": "ring",
        "verdict": "live",
    }


@pytest.mark.parametrize("task_id", ["never-registered", "%00", "bad%20id"])
async def test_cancel_of_an_unknown_task_answers_404(
    api: httpx.AsyncClient, key: str, task_id: str
) -> None:
    response = await api.delete(f"/v1/tasks/{task_id}", headers=bearer(key))
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
