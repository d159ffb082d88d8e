"""SubmitService (service/checks/submit.py) on its own, against the simulator: one upstream submit
per Idempotency-Key, the first answer replayed, another body refused, and a refusal before any
call that records nothing and frees the key."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.checks.submit_answers import DifferentBody
from service.sim.server import SimServer
from tests.support.checks import (
    PHONE_AS_WRITTEN,
    PHONE_MASKED,
    check_request,
    checks_settings,
    submit_calls,
    submit_service,
)
from tests.support.factories import insert_client

pytestmark = pytest.mark.usefixtures("flush_redis")


def body_of(json_text: str) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(json_text)
    return body


async def test_one_key_submits_once_and_replays_the_first_answer(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.configure(submit_script="ring-0-60s")
    client_id = await insert_client(sessions)
    async with submit_service(checks_settings(database_url, redis_url, fresh_sim.base_url)) as svc:
        first = await svc.submit(client_id, check_request(), "order-17")
        # The same number as another form writes it is the same body.
        again = await svc.submit(client_id, check_request(PHONE_AS_WRITTEN), "order-17")
        with pytest.raises(DifferentBody):
            await svc.submit(client_id, check_request("525512349876"), "order-17")

    task = body_of(first.body_json)
    assert first.status == 201
    assert (task["state"], task["source"], task["phone_number_masked"]) == (
        "pending",
        "submitted",
        PHONE_MASKED,
    )
    assert again.replayed
    assert (again.status, body_of(again.body_json)) == (201, task)
    assert submit_calls(fresh_sim) == 1


async def test_a_refusal_before_any_call_records_nothing_and_frees_the_key(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client_id = await insert_client(sessions)
    settings = checks_settings(
        database_url, redis_url, fresh_sim.base_url, upstream_api_id=None, upstream_api_secret=None
    )
    async with submit_service(settings) as svc:
        refused = await svc.submit(client_id, check_request(), "order-18")
        again = await svc.submit(client_id, check_request(), "order-18")

    assert refused.status == 503
    assert body_of(refused.body_json)["code"] == "NO_UPSTREAM_CREDENTIALS"
    # Freed: the second request is submitted again (and refused again), not replayed.
    assert not again.replayed
    assert again.status == 503
    assert submit_calls(fresh_sim) == 0


async def test_a_retry_across_a_rotation_of_the_secret_key_replays_the_first_answer(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The kept fingerprint is under the old key; the rotated process matches it through the
    old key in PHONEBRIDGE_SECRET_KEY_PREVIOUS (docs/operations.md), and still tells another
    body apart."""
    fresh_sim.control.configure(submit_script="ring-0-60s")
    client_id = await insert_client(sessions)
    old, new = "the-old-secret-key-of-this-deployment", "the-new-secret-key-of-this-deployment"
    before = checks_settings(database_url, redis_url, fresh_sim.base_url, secret_key=old)
    rotated = checks_settings(
        database_url, redis_url, fresh_sim.base_url, secret_key=new, secret_key_previous=old
    )
    async with submit_service(before) as svc:
        first = await svc.submit(client_id, check_request(), "order-rotated")
    async with submit_service(rotated) as svc:
        again = await svc.submit(client_id, check_request(), "order-rotated")
        with pytest.raises(DifferentBody):
            await svc.submit(client_id, check_request("525512349876"), "order-rotated")

    assert again.replayed
    assert (again.status, again.body_json) == (first.status, first.body_json)
    assert submit_calls(fresh_sim) == 1
