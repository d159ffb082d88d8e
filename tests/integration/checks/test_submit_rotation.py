"""SubmitService (service/checks/submit.py) across a rotation of PHONEBRIDGE_SECRET_KEY: once the
new key writes and the old one is listed in PHONEBRIDGE_SECRET_KEY_PREVIOUS, an answer kept under
the old key's number digest still answers `max_age_s` with no upstream call; once the old key is
dropped, that answer is a miss and the number is checked again."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.sim.server import SimServer
from tests.support.checks import check_request, checks_settings, submit_calls, submit_service
from tests.support.factories import insert_client

pytestmark = pytest.mark.usefixtures("flush_redis")

OLD = "the-old-secret-key-of-this-deployment"
NEW = "the-new-secret-key-of-this-deployment"


async def test_after_the_switch_what_the_old_digest_kept_still_matches(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.configure(submit_script="ring-0")
    url = fresh_sim.base_url
    client_id = await insert_client(sessions)
    fresh = dataclasses.replace(check_request(), max_age_s=600)
    async with submit_service(checks_settings(database_url, redis_url, url, secret_key=OLD)) as svc:
        first = await svc.submit(client_id, check_request(), None)
    switched = checks_settings(
        database_url, redis_url, url, secret_key=NEW, secret_key_previous=OLD
    )
    async with submit_service(switched) as svc:
        cached = await svc.submit(client_id, fresh, None)
    calls = submit_calls(fresh_sim)
    async with submit_service(checks_settings(database_url, redis_url, url, secret_key=NEW)) as svc:
        missed = await svc.submit(client_id, fresh, None)

    task_id = orjson.loads(first.body_json)["task_id"]
    assert (cached.status, orjson.loads(cached.body_json)["task_id"]) == (200, task_id)
    assert calls == 1
    assert missed.status == 201
    assert submit_calls(fresh_sim) == 2
