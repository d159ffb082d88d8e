"""Check jobs end to end in one process: the real API, the scheduler loop and a real Celery worker
against the simulator. Items become submitted tasks with their job's id, a duplicate is checked
once, a number upstream refuses is `refused`, the job completes by itself with one
`job.completed` whose data is the job; `include_job_items: false` leaves its items' task events
out; `max_age_s` answers from the earlier checks with no upstream call (jobs and single checks);
the account pause pauses running jobs (upstream) and they resume by themselves; an item whose
worker died while submitting is `unknown`, never submitted again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.sim.server import SimServer
from service.store.db import transaction
from service.upstream.pause import close_pause, open_pause
from tests.support.api import api_client, bearer, feed
from tests.support.checks import submit, submit_calls
from tests.support.engine import running_engine
from tests.support.factories import new_key
from tests.support.jobs import all_results, create_json_job, get_job, job_move, mx_number
from tests.support.settings import engine_settings
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.usefixtures("flush_redis", "no_foreign_pending_tasks")

# Bogotá's old 8-digit form: possible, so phonebridge submits it; the simulator refuses it as
# upstream would (INVALID_ARGUMENT).
REFUSED_NUMBER = "+57 1 234 5678"


@pytest.fixture
def job_settings(database_url: str, redis_url: str, fresh_sim: SimServer) -> Settings:
    return engine_settings(database_url, redis_url, fresh_sim.base_url, webhook_allow_private=True)


@pytest.fixture
async def api(job_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(job_settings) as client:
        yield client


@pytest.fixture
async def key(job_settings: Settings) -> str:
    return await new_key(job_settings)


async def finished_job(api: httpx.AsyncClient, key: str, job_id: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        job = await get_job(api, key, job_id)
        return job if job["state"] in ("completed", "cancelled") else None

    job: dict[str, Any] = await wait_until_async(finished, timeout_s=30, what="the job's end")
    return job


async def job_events(api: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = (await feed(api, key, "?limit=500"))["data"]
    return events


async def subscription(
    api: httpx.AsyncClient, key: str, *, include_job_items: bool
) -> dict[str, Any]:
    response = await api.post(
        "/v1/subscriptions",
        json={
            "url": "http://127.0.0.1:9/hook",
            "event_types": ["task.completed", "job.completed"],
            "include_job_items": include_job_items,
        },
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["include_job_items"] is include_job_items
    return body


async def deliveries_by_type(
    sessions: async_sessionmaker[AsyncSession], subscription_id: str
) -> dict[str, int]:
    async with transaction(sessions) as session:
        rows = await session.execute(
            text(
                "SELECT e.type, count(*) FROM deliveries d JOIN events e ON e.id = d.event_id "
                "JOIN subscriptions s ON s.id = d.subscription_id WHERE s.public_id = :id "
                "GROUP BY e.type"
            ),
            {"id": subscription_id},
        )
        return {str(kind): int(count) for kind, count in rows}


async def test_a_job_submits_each_number_once_and_completes_with_one_event(
    api: httpx.AsyncClient,
    key: str,
    job_settings: Settings,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.configure(submit_script="ring-1")
    every = await subscription(api, key, include_job_items=True)
    no_items = await subscription(api, key, include_job_items=False)
    items = [
        {"phone_number": mx_number(11), "reference": "a", "metadata": {"row": 1}},
        {"phone_number": mx_number(12), "reference": "b"},
        {"phone_number": REFUSED_NUMBER, "reference": "refused"},
        {"phone_number": mx_number(11), "reference": "a-again"},
        {"phone_number": mx_number(13), "reference": "c"},
    ]
    created = await create_json_job(api, key, {"items": items, "name": "book"})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["state"] == "queued"

    async with running_engine(job_settings):
        job = await finished_job(api, key, job_id)
        events = await wait_until_async(
            lambda: job_events_of_type(api, key, "job.completed"), what="job.completed"
        )

    assert job["state"] == "completed"
    assert job["finished_at"] is not None
    counts = job["counts"]
    assert (counts["items"], counts["duplicates"], counts["to_submit"]) == (5, 1, 4)
    assert (counts["submitted"], counts["completed"], counts["pending"]) == (3, 3, 0)
    assert counts["by_verdict"]["live"] == 4  # three tasks and the duplicate
    assert submit_calls(fresh_sim) == 4  # each distinct number once, the refused one included

    rows = await all_results(api, key, job_id)
    assert [(row["line"], row["state"]) for row in rows] == [
        (1, "completed"),
        (2, "completed"),
        (3, "refused"),
        (4, "completed"),
        (5, "completed"),
    ]
    assert rows[3]["task_id"] == rows[0]["task_id"]
    assert rows[3]["phone_status"] == "ring"
    assert rows[3]["verdict"] == "live"
    assert rows[2]["task_id"] is None

    task = (await api.get(f"/v1/tasks/{rows[0]['task_id']}", headers=bearer(key))).json()
    assert task["job_id"] == job_id
    assert task["source"] == "submitted"
    assert task["metadata"] == {"row": 1}
    assert task["phone_number_masked"] == "52******0011"

    (completed,) = events
    assert completed["data"]["id"] == job_id
    assert completed["data"]["state"] == "completed"
    assert completed["data"]["counts"] == counts
    task_events = await job_events_of_type(api, key, "task.completed")
    assert {event["data"]["job_id"] for event in task_events} == {job_id}
    assert await deliveries_by_type(sessions, every["id"]) == {
        "task.completed": 3,
        "job.completed": 1,
    }
    assert await deliveries_by_type(sessions, no_items["id"]) == {"job.completed": 1}
    async with transaction(sessions) as session:
        kept = (
            await session.execute(
                text(
                    "SELECT count(*) FROM scheduled_submits s JOIN check_jobs j "
                    "ON j.id = s.job_pk WHERE j.public_id = :id "
                    "AND s.phone_number_sealed IS NOT NULL"
                ),
                {"id": job_id},
            )
        ).scalar_one()
    assert kept == 0  # every number erased once submitted


async def job_events_of_type(
    api: httpx.AsyncClient, key: str, event_type: str
) -> list[dict[str, Any]]:
    return [event for event in await job_events(api, key) if event["type"] == event_type]


async def test_max_age_s_answers_jobs_and_single_checks_from_earlier_answers_without_a_call(
    api: httpx.AsyncClient, key: str, job_settings: Settings, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="busy-0")
    numbers = [mx_number(21), mx_number(22)]
    first = await create_json_job(api, key, {"items": [{"phone_number": n} for n in numbers]})
    async with running_engine(job_settings):
        await finished_job(api, key, first.json()["id"])
        earlier = await all_results(api, key, first.json()["id"])
        calls = submit_calls(fresh_sim)

        again = await create_json_job(
            api,
            key,
            {"items": [{"phone_number": n} for n in [*numbers, mx_number(21)]], "max_age_s": 600},
        )
        assert again.status_code == 201, again.text
        counts = again.json()["counts"]
        assert (counts["cached"], counts["duplicates"], counts["to_submit"]) == (2, 1, 0)
        job = await finished_job(api, key, again.json()["id"])
        rows = await all_results(api, key, again.json()["id"])

        single = await submit(api, key, numbers[1], max_age_s=600)
        fresh = await submit(api, key, numbers[1])

    assert job["state"] == "completed"
    assert job["counts"]["by_verdict"]["live"] == 3
    assert [row["cached"] for row in rows] == [True, True, True]
    assert [row["task_id"] for row in rows] == [
        earlier[0]["task_id"],
        earlier[1]["task_id"],
        earlier[0]["task_id"],
    ]
    assert [row["phone_status"] for row in rows] == ["busy"] * 3
    assert single.status_code == 200, single.text
    assert single.json()["task_id"] == earlier[1]["task_id"]
    assert fresh.status_code == 201
    # Only the check without max_age_s reached upstream after the first job.
    assert submit_calls(fresh_sim) == calls + 1


async def test_the_account_pause_pauses_running_jobs_and_they_resume_by_themselves(
    api: httpx.AsyncClient,
    key: str,
    job_settings: Settings,
    fresh_sim: SimServer,
    redis_client: Redis[Any],
) -> None:
    fresh_sim.control.configure(submit_script="ring-0")
    job_id = (
        await create_json_job(
            api, key, {"items": [{"phone_number": mx_number(i)} for i in range(30, 33)]}
        )
    ).json()["id"]
    await open_pause(redis_client, "KEY_EXPIRED", datetime.now(UTC))
    async with running_engine(job_settings):

        async def paused() -> dict[str, Any] | None:
            job = await get_job(api, key, job_id)
            return job if job["state"] == "paused" else None

        job = await wait_until_async(paused, what="the upstream pause of the job")
        assert job["paused_reason"] == "upstream"
        refused = await job_move(api, key, job_id, "resume")
        assert refused.status_code == 409
        assert "resumes by itself" in refused.json()["detail"]
        assert submit_calls(fresh_sim) == 0
        await close_pause(redis_client)
        job = await finished_job(api, key, job_id)

    assert job["state"] == "completed"
    assert job["counts"]["completed"] == 3
    assert submit_calls(fresh_sim) == 3


async def test_an_item_whose_worker_died_while_submitting_is_unknown_and_never_sent_again(
    api: httpx.AsyncClient,
    key: str,
    job_settings: Settings,
    fresh_sim: SimServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fresh_sim.control.configure(submit_script="ring-0")
    body = {"items": [{"phone_number": mx_number(i)} for i in range(40, 42)], "start": False}
    job_id = (await create_json_job(api, key, body)).json()["id"]
    assert (await job_move(api, key, job_id, "start")).status_code == 200
    async with transaction(sessions) as session:
        # As a worker that marked line 1 `submitting` and died before writing its answer.
        await session.execute(
            text(
                "UPDATE scheduled_submits SET state = 'submitting', "
                "lease_token = gen_random_uuid(), lease_until = :past FROM check_jobs j "
                "WHERE j.id = scheduled_submits.job_pk "
                "AND j.public_id = :id AND scheduled_submits.job_line = 1"
            ),
            {"id": job_id, "past": datetime.now(UTC) - timedelta(seconds=1)},
        )
    async with running_engine(job_settings):
        job = await finished_job(api, key, job_id)

    rows = await all_results(api, key, job_id)
    assert [row["state"] for row in rows] == ["unknown", "completed"]
    assert submit_calls(fresh_sim) == 1
    assert job["state"] == "completed"


async def test_a_cancelled_job_reports_once_its_submitted_items_are_final(
    api: httpx.AsyncClient, key: str, job_settings: Settings, fresh_sim: SimServer
) -> None:
    fresh_sim.control.configure(submit_script="ring-2s")
    job_id = (await create_json_job(api, key, {"items": [{"phone_number": mx_number(50)}]})).json()[
        "id"
    ]
    async with running_engine(job_settings):

        async def submitted() -> dict[str, Any] | None:
            job = await get_job(api, key, job_id)
            return job if job["counts"]["pending"] == 1 else None

        await wait_until_async(submitted, what="the item's pending task")
        cancelled = await job_move(api, key, job_id, "cancel")
        assert cancelled.status_code == 200
        assert await job_events_of_type(api, key, "job.completed") == []
        (event,) = await wait_until_async(
            lambda: job_events_of_type(api, key, "job.completed"), what="job.completed"
        )

    assert event["data"]["state"] == "cancelled"
    assert event["data"]["counts"]["completed"] == 1
    assert event["data"]["counts"]["pending"] == 0


async def test_job_items_carry_the_clients_callback_url_when_the_api_is_public(
    database_url: str, redis_url: str, fresh_sim: SimServer
) -> None:
    settings = engine_settings(
        database_url,
        redis_url,
        fresh_sim.base_url,
        public_url="http://phonebridge.test",
        hinted_poll_initial_s=0.5,
    )
    fresh_sim.control.configure(submit_script="ring-0-1s")
    fresh_sim.control.set_callbacks(lose=1.0)  # keep the simulator from calling a fake host
    key = await new_key(settings)
    async with api_client(settings) as api:
        job_id = (
            await create_json_job(api, key, {"items": [{"phone_number": mx_number(60)}]})
        ).json()["id"]
        async with running_engine(settings):
            await finished_job(api, key, job_id)
        (row,) = await all_results(api, key, job_id)

    # The simulator plans a callback only for a submit that carried one.
    (planned,) = fresh_sim.control.callback_log()
    assert planned["task_id"] == row["task_id"]
