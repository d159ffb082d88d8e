"""Submitting a check for an authenticated client (service/api/submitting.py, what `POST
/v1/checks` and the portal's check form both call), on a route of the test's own against the
simulator: a check that stays pending takes room under the client's pending limit before
upstream is called, one answered at once takes none, and an Idempotency-Key used with another
body is a 422 that gives its room back. The REST route around it is test_checks.py's, the
portal's form tests/integration/portal/test_portal_checks.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from service.api.deps import ClientDep, ResourcesDep
from service.api.submitting import submit_for_client
from service.config import Settings
from service.domain.checks import CheckRequest, validate_check
from service.sim.server import SimServer
from tests.support.api import api_client, bearer
from tests.support.checks import PHONE, checks_settings, submit_calls
from tests.support.factories import limited_key

pytestmark = pytest.mark.usefixtures("flush_redis")


@pytest.fixture
def settings_for_checks(database_url: str, redis_url: str, sim: SimServer) -> Settings:
    return checks_settings(database_url, redis_url, sim.base_url)


@pytest.fixture
async def probe(settings_for_checks: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings_for_checks) as api:
        app: FastAPI = api.app  # type: ignore[attr-defined]

        @app.post("/probe/submit")
        async def submit(
            request: Request, client: ClientDep, resources: ResourcesDep, metadata: int = 0
        ) -> dict[str, Any]:
            body = {"phone_number": PHONE, "metadata": {"n": metadata}}
            check = validate_check(body, resources.settings.check_countries)
            assert isinstance(check, CheckRequest)
            key = request.headers.get("idempotency-key")
            answer = await submit_for_client(resources, request, client, check, key)
            return {"status": answer.status, "created_pending": answer.created_pending}

        yield api


async def submitted(
    probe: httpx.AsyncClient, key: str, idempotency_key: str, metadata: int = 0
) -> httpx.Response:
    headers = bearer(key) | {"idempotency-key": idempotency_key}
    return await probe.post("/probe/submit", params={"metadata": metadata}, headers=headers)


async def test_a_pending_check_takes_the_room_and_the_next_is_refused_before_upstream(
    probe: httpx.AsyncClient, settings_for_checks: Settings, fresh_sim: SimServer
) -> None:
    key, _ = await limited_key(settings_for_checks, max_pending=1)
    fresh_sim.control.configure(submit_script="ring-0-60s")

    first = await submitted(probe, key, "first")
    second = await submitted(probe, key, "second")

    assert first.json() == {"status": 201, "created_pending": True}
    assert second.status_code == 429
    assert second.json()["type"].endswith("too-many-pending")
    assert submit_calls(fresh_sim) == 1


async def test_a_check_answered_at_once_takes_no_room(
    probe: httpx.AsyncClient, settings_for_checks: Settings, fresh_sim: SimServer
) -> None:
    key, _ = await limited_key(settings_for_checks, max_pending=1)
    fresh_sim.control.configure(submit_script="busy-0")
    answered = [await submitted(probe, key, f"done-{i}") for i in range(3)]
    fresh_sim.control.configure(submit_script="ring-0-60s")

    pending = await submitted(probe, key, "pending")

    assert [r.json() for r in answered] == [{"status": 201, "created_pending": False}] * 3
    assert pending.json() == {"status": 201, "created_pending": True}


async def test_a_key_used_with_another_body_is_422_and_gives_its_room_back(
    probe: httpx.AsyncClient, settings_for_checks: Settings, fresh_sim: SimServer
) -> None:
    key, _ = await limited_key(settings_for_checks, max_pending=1)
    fresh_sim.control.configure(submit_script="busy-0")
    assert (await submitted(probe, key, "reused", metadata=1)).json()["status"] == 201
    fresh_sim.control.configure(submit_script="ring-0-60s")

    other_body = await submitted(probe, key, "reused", metadata=2)
    pending = await submitted(probe, key, "fresh")

    assert other_body.status_code == 422
    assert "different request body" in other_body.json()["detail"]
    assert pending.json() == {"status": 201, "created_pending": True}
    assert submit_calls(fresh_sim) == 2
