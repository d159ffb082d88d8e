"""Submitting checks and sending upstream's callbacks, as the tests do it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.app import create_app
from service.api.resources import ApiResources
from service.checks.submit import SubmitService
from service.config import Settings
from service.domain.checks import CheckRequest, validate_check
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES
from service.sim.server import SimServer
from service.store.checks import NewTask, SubmittedTask, record_submitted_task
from service.store.db import transaction
from tests.support.api import bearer
from tests.support.settings import make_settings

# A Mexico City number, as upstream is sent it (E.164 digits without '+'), and its mask.
PHONE = "525512341234"
PHONE_MASKED = "52******1234"
# The same number as a CRM may hold it: with '+', spaces and Mexico's old mobile '1'.
PHONE_AS_WRITTEN = "+52 1 55 1234 1234"
# The base URL at which upstream would reach this API: checks then carry a callback URL.
PUBLIC_URL = "http://phonebridge.test"


def checks_settings(database_url: str, redis_url: str, base_url: str, **overrides: Any) -> Settings:
    """Checks submitted to the simulator at `base_url`: a short upstream timeout and pause probe;
    no callback unless `public_url` is among the overrides."""
    values: dict[str, Any] = {
        "upstream_base_url": base_url,
        "upstream_timeout_s": 1.0,
        "pause_probe_s": 1.0,
    }
    values.update(overrides)
    return make_settings(database_url, redis_url, **values)


@asynccontextmanager
async def submit_service(settings: Settings) -> AsyncIterator[SubmitService]:
    """The API process's submit service, with the pools and Redis its lifespan opens."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        resources: ApiResources = app.state.resources
        yield resources.checks


def check_request(phone_number: str = PHONE, metadata: object = None) -> CheckRequest:
    """A `POST /v1/checks` body as the route reads it (the default countries)."""
    body: dict[str, Any] = {"phone_number": phone_number}
    if metadata is not None:
        body["metadata"] = metadata
    request = validate_check(body, DEFAULT_CHECK_COUNTRIES)
    assert isinstance(request, CheckRequest), request
    return request


async def submit(
    api: httpx.AsyncClient,
    key: str,
    phone_number: str = PHONE,
    *,
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
    recheck: dict[str, Any] | None = None,
    max_age_s: int | None = None,
) -> httpx.Response:
    headers = bearer(key)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    body: dict[str, Any] = {"phone_number": phone_number}
    if metadata is not None:
        body["metadata"] = metadata
    if recheck is not None:
        body["recheck"] = recheck
    if max_age_s is not None:
        body["max_age_s"] = max_age_s
    return await api.post("/v1/checks", json=body, headers=headers)


async def scheduled_submit_of(
    sessions: async_sessionmaker[AsyncSession], task_id: str
) -> dict[str, Any] | None:
    """The scheduled submit (re-checks) of a task, straight from the store."""
    async with transaction(sessions) as session:
        row = (
            await session.execute(
                text(
                    "SELECT s.* FROM scheduled_submits s JOIN tasks t ON t.id = s.task_pk"
                    " WHERE t.task_id = :t"
                ),
                {"t": task_id},
            )
        ).one_or_none()
    return None if row is None else dict(row._mapping)


def submit_calls(sim: SimServer) -> int:
    """How many submits reached the simulator since its last reset."""
    return len(sim.control.calls(endpoint="submit"))


async def callback_token(api: httpx.AsyncClient, key: str) -> str:
    response = await api.get("/v1/callback-url", headers=bearer(key))
    assert response.status_code == 200, response.text
    url: str = response.json()["url"]
    return url.rsplit("/", 1)[1]


async def hint(api: httpx.AsyncClient, token: str, task_id: str | None) -> httpx.Response:
    params = {"request_id": "TID0", "phone_number": "52******1234", "phone_status": "ring"}
    if task_id is not None:
        params["task_id"] = task_id
    return await api.get(f"/hooks/accuauth/{token}", params=params)


async def schedule_of(
    sessions: async_sessionmaker[AsyncSession], task_id: str
) -> tuple[datetime | None, datetime | None]:
    """A task's next_poll_at and last_hint_at, straight from the store."""
    async with transaction(sessions) as session:
        row = (
            await session.execute(
                text("SELECT next_poll_at, last_hint_at FROM tasks WHERE task_id = :t"),
                {"t": task_id},
            )
        ).one()
    return row.next_poll_at, row.last_hint_at


async def insert_submitted_task(
    sessions: async_sessionmaker[AsyncSession],
    client_id: int,
    task_id: str,
    now: datetime,
    *,
    first_poll_in: timedelta,
    safety_net_in: timedelta | None = None,
) -> SubmittedTask:
    """A pending submitted check written as POST /v1/checks writes it (no upstream call): due
    after `first_poll_in`, or, with `safety_net_in` (its check carried a callback), after that
    while the client's callbacks are trusted."""
    async with transaction(sessions) as session:
        return await record_submitted_task(
            session,
            NewTask(
                client_id=client_id,
                task_id=task_id,
                masked=PHONE_MASKED,
                metadata_json="{}",
                now=now,
                expires_at=now + timedelta(hours=24),
                first_poll_at=now + first_poll_in,
                result=None,
                request_id=None,
                safety_net_poll_at=None if safety_net_in is None else now + safety_net_in,
            ),
        )
