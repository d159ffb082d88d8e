"""SQL injection through every string parameter (path, query, body): each answers a 4xx or a
normal result, never a 5xx; what is stored is the text as sent; and afterwards every table is
still there, no row was lost, and another client's data is exactly as it was."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.routes import Operation, v1_operations
from tests.support.tenants import Tenant, own_ids, snapshot

INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE tasks; --",
    '"; DROP TABLE subscriptions; --',
    "1); DELETE FROM api_keys; --",
    "' UNION SELECT key_hash, NULL FROM api_keys --",
    "%' OR '%'='",
    "\\'; TRUNCATE events CASCADE; --",
    "$$; DROP TABLE deliveries; $$",
    "1 AND 1=CAST((SELECT key_hash FROM api_keys LIMIT 1) AS int)",
    "evt_' OR 'a'='a",
    "sub_1 OR 1=1",
    "T-1' AND client_id <> client_id --",
    "\x00' OR 1=1 --",
    "\u02bc OR \u02bc1\u02bc=\u02bc1",  # a look-alike of the apostrophe
    "'||(SELECT string_agg(prefix, ',') FROM api_keys)||'",
]

# The string-carrying fields of each request body, as (path into the body, base body). A field
# path is a list of keys and indexes; "*key*" means "as a key of that object". The coverage test
# below holds this table to the published schema, so a new body field cannot be left out.
RECOVER = {"since": "2020-01-01T00:00:00Z"}
BODY_FIELDS: dict[tuple[str, str], tuple[dict[str, Any], list[list[Any]]]] = {
    ("POST", "/v1/tasks"): (
        {"task_id": "T-inj"},
        [["task_id"], ["submitted_at"], ["metadata", "value"], ["metadata", "*key*"]],
    ),
    ("POST", "/v1/tasks/batch"): (
        {"tasks": [{"task_id": "T-inj"}]},
        [
            ["tasks", 0, "task_id"],
            ["tasks", 0, "submitted_at"],
            ["tasks", 0, "metadata", "value"],
            ["tasks", 0, "metadata", "*key*"],
        ],
    ),
    ("POST", "/v1/subscriptions"): (
        {"url": "https://hooks.phonebridge-security.test/inj"},
        [["url"], ["description"], ["event_types", 0], ["max_rps"], ["include_job_items"]],
    ),
    ("PATCH", "/v1/subscriptions/{subscription_id}"): (
        {},
        [["url"], ["description"], ["event_types", 0], ["max_rps"], ["include_job_items"]],
    ),
    ("POST", "/v1/subscriptions/{subscription_id}/recover"): (
        RECOVER,
        [["since"], ["until"]],
    ),
    ("POST", "/v1/events/{event_id}/redeliver"): ({}, [["subscription_id"]]),
    ("POST", "/v1/checks"): (
        {"phone_number": "525512341234"},
        [
            ["phone_number"],
            ["max_age_s"],
            ["metadata", "value"],
            ["metadata", "*key*"],
            ["recheck", "verdicts", 0],
        ],
    ),
    ("POST", "/v1/check-jobs"): (
        {"items": [{"phone_number": "525512341234"}], "start": False},
        [
            ["items", 0, "phone_number"],
            ["items", 0, "reference"],
            ["items", 0, "metadata", "value"],
            ["name"],
            ["max_age_s"],
            ["recheck", "verdicts", 0],
            ["start"],
        ],
    ),
}


def with_value(body: dict[str, Any], field: list[Any], value: str) -> dict[str, Any]:
    """A deep copy of `body` with `value` placed at `field` (creating what is missing)."""
    copy: Any = _deep_copy(body)
    node = copy
    for position, step in enumerate(field[:-1]):
        following = field[position + 1]
        if isinstance(node, list):
            while len(node) <= step:
                node.append({})
            node = node[step]
        else:
            node = node.setdefault(step, [] if isinstance(following, int) else {})
    last = field[-1]
    if last == "*key*":
        node[value] = "v"
    elif isinstance(node, list):
        node.append(value) if len(node) <= last else node.__setitem__(last, value)
    else:
        node[last] = value
    result: dict[str, Any] = copy
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def base_body(op: Operation) -> dict[str, Any] | None:
    if not op.takes_body:
        return None
    return BODY_FIELDS.get((op.method, op.path), ({}, []))[0]


def assert_not_a_server_error(response: httpx.Response, where: object) -> None:
    assert response.status_code < 500, (where, response.status_code, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", where


async def database_shape(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Every table of the schema with its row count."""
    async with sessions() as session:
        tables = (
            await session.execute(
                text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'")
            )
        ).scalars()
        return {
            table: (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608
            for table in list(tables)
        }


@asynccontextmanager
async def left_intact(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], victim: Tenant
) -> AsyncIterator[None]:
    """Every table still there afterwards, none with fewer rows (the attacker may add its own),
    no client or key added or removed, and the victim's data exactly as it was."""
    shape_before = await database_shape(sessions)
    victim_before = await snapshot(api, victim)
    yield
    shape_after = await database_shape(sessions)
    assert set(shape_after) == set(shape_before)
    assert all(shape_after[table] >= count for table, count in shape_before.items())
    for table in ("clients", "api_keys"):
        assert shape_after[table] == shape_before[table], table
    assert await snapshot(api, victim) == victim_before


def test_the_body_field_table_covers_every_field_of_every_published_body(
    security_app_running: FastAPI,
) -> None:
    document = security_app_running.openapi()
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if not content:
                continue
            schema = content["application/json"]["schema"]
            refs = [schema, *schema.get("anyOf", [])]
            properties: set[str] = set()
            for ref in refs:
                if "$ref" in ref:
                    properties |= set(schemas[ref["$ref"].rsplit("/", 1)[-1]]["properties"])
            fields = BODY_FIELDS[(method.upper(), path)][1]
            named = {field[0] for field in fields}
            assert properties - {"enabled"} <= named, (method, path)


async def test_injection_in_path_parameters_answers_4xx_or_a_normal_result(
    api: httpx.AsyncClient,
    security_app_running: FastAPI,
    alice: Tenant,
    mallory: Tenant,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    checked = 0
    async with left_intact(api, sessions, alice):
        for op in v1_operations(security_app_running):
            for name in op.path_parameters:
                for injection in INJECTIONS:
                    ids = {**own_ids(mallory), name: quote(injection, safe="")}
                    response = await api.request(
                        op.method, op.url(**ids), json=base_body(op), headers=mallory.headers
                    )
                    assert_not_a_server_error(response, (op, name, injection))
                    checked += 1
    assert checked >= 10 * len(INJECTIONS)


CSV = {"content-type": "text/csv"}
CSV_JOB = b"phone_number\n+52 55 1234 5678\n"


async def test_injection_in_query_parameters_answers_422(
    api: httpx.AsyncClient,
    security_app_running: FastAPI,
    alice: Tenant,
    mallory: Tenant,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    document = security_app_running.openapi()
    checked = 0
    async with left_intact(api, sessions, alice):
        for path, item in document["paths"].items():
            if not path.startswith("/v1/"):
                continue
            for method, operation in item.items():
                op = Operation(method.upper(), path)
                for parameter in operation.get("parameters", []):
                    if parameter["in"] != "query":
                        continue
                    for injection in INJECTIONS:
                        url = op.url(**own_ids(mallory))
                        csv_job = (op.method, op.path) == ("POST", "/v1/check-jobs")
                        response = await api.request(
                            op.method,
                            url,
                            params={parameter["name"]: injection},
                            # A job's query parameters go with a CSV body.
                            content=CSV_JOB if csv_job else None,
                            headers={**mallory.headers, **(CSV if csv_job else {})},
                        )
                        where = (op, parameter["name"], injection)
                        assert_not_a_server_error(response, where)
                        if csv_job and parameter["name"] == "name" and injection.isprintable():
                            # Any printable text is a job's name: kept as given, never run.
                            assert response.status_code == 201, where
                            assert response.json()["name"] == injection, where
                        else:
                            assert response.status_code == 422, where
                        checked += 1
    assert checked >= 4 * len(INJECTIONS)


async def test_injection_in_body_fields_answers_4xx_or_a_normal_result(
    api: httpx.AsyncClient,
    alice: Tenant,
    mallory: Tenant,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with left_intact(api, sessions, alice):
        for (method, path), (body, fields) in BODY_FIELDS.items():
            op = Operation(method, path)
            for field in fields:
                for injection in INJECTIONS:
                    response = await api.request(
                        method,
                        op.url(**own_ids(mallory)),
                        json=with_value(body, field, injection),
                        headers=mallory.headers,
                    )
                    assert_not_a_server_error(response, (op, field, injection))


async def test_injection_in_the_idempotency_key_answers_4xx_or_a_normal_result(
    api: httpx.AsyncClient,
    alice: Tenant,
    mallory: Tenant,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with left_intact(api, sessions, alice):
        for injection in INJECTIONS:
            response = await api.post(
                "/v1/checks",
                json={"phone_number": "525512341234"},
                headers={
                    b"authorization": mallory.headers["Authorization"].encode(),
                    b"idempotency-key": injection.encode(),
                },
            )
            assert_not_a_server_error(response, ("Idempotency-Key", injection))


async def test_injected_text_is_stored_and_answered_exactly_as_sent(
    api: httpx.AsyncClient, mallory: Tenant
) -> None:
    metadata = {injection: injection for injection in INJECTIONS if "\x00" not in injection}
    task_id = f"INJ-{secrets.token_hex(4)}"
    created = await api.post(
        "/v1/tasks", json={"task_id": task_id, "metadata": metadata}, headers=mallory.headers
    )
    assert created.status_code == 201, created.text
    read = await api.get(f"/v1/tasks/{task_id}", headers=mallory.headers)
    assert read.json()["metadata"] == metadata
    for injection in metadata:
        response = await api.post(
            "/v1/subscriptions",
            json={"url": "https://hooks.phonebridge-security.test/i", "description": injection},
            headers=mallory.headers,
        )
        assert response.status_code == 201, response.text
        stored = await api.get(
            f"/v1/subscriptions/{response.json()['id']}", headers=mallory.headers
        )
        assert stored.json()["description"] == injection
