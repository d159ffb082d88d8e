"""Prometheus metrics: the API's /metrics (store snapshot, rate limiter, pause, read at scrape
time) and the exporter ports of real `phonebridge worker` and `phonebridge scheduler` processes
(polls, upstream latency, scheduling delay, claims, webhook attempts)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.features.keys import create_client_and_key
from service.observability.snapshot import (
    REFRESH_LOCK_KEY,
    SNAPSHOT_KEY,
    StoreSnapshotRefresh,
    read_snapshot,
)
from service.run.processes import free_port
from service.sim.server import SimServer
from service.store.db import transaction
from service.upstream.pause import close_pause, open_pause
from service.upstream.ratelimit import SAFETY_FACTOR, UpstreamRateLimiter
from tests.support.api import api_client, bearer
from tests.support.commands import clean_environment
from tests.support.engine import Processes
from tests.support.receivers import Receiver, Reply
from tests.support.rows import cancel_pending_tasks
from tests.support.settings import make_settings
from tests.support.upstream import API_ID, API_SECRET
from tests.support.waiting import wait_until_async

# Limiter, pause and snapshot state of earlier tests must not show in these figures.
pytestmark = pytest.mark.usefixtures("flush_redis")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(api: httpx.AsyncClient) -> Samples:
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


# --- the API's /metrics ------------------------------------------------------------------------


async def refresh_snapshot(
    sessions: async_sessionmaker[AsyncSession], redis_client: Redis[Any], now: datetime
) -> None:
    await redis_client.delete(REFRESH_LOCK_KEY)
    await StoreSnapshotRefresh(sessions, redis_client, interval_s=15.0).run(now)


async def test_task_gauges_count_the_store_as_of_the_latest_snapshot(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], redis_client: Redis[Any]
) -> None:
    now = datetime.now(UTC)
    overdue_for = timedelta(days=3650)  # older than anything another test leaves behind
    async with api_client(settings) as api:
        await refresh_snapshot(sessions, redis_client, now)
        before = await scrape(api)
        async with transaction(sessions) as session:
            client_id = (
                await session.execute(
                    text("INSERT INTO clients (name) VALUES ('metrics') RETURNING id")
                )
            ).scalar_one()
            await session.execute(
                text(
                    """
                    INSERT INTO tasks (client_id, task_id, state, submitted_at, expires_at,
                                       next_poll_at, completed_at)
                    VALUES (:c, 'due', 'pending', :now, :now, :overdue, NULL),
                           (:c, 'later', 'pending', :now, :now, :later, NULL),
                           (:c, 'done', 'completed', :now, :now, NULL, :now)
                    """
                ),
                {
                    "c": client_id,
                    "now": now,
                    "overdue": now - overdue_for,
                    "later": now + timedelta(hours=1),
                },
            )
        try:
            unchanged = await scrape(api)
            await refresh_snapshot(sessions, redis_client, now)
            after = await scrape(api)
        finally:
            async with transaction(sessions) as session:
                await session.execute(
                    text("DELETE FROM tasks WHERE client_id = :c"), {"c": client_id}
                )

    def delta(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    # Between refreshes a scrape reads the snapshot, not the database.
    assert value(unchanged, "phonebridge_tasks", state="pending") == value(
        before, "phonebridge_tasks", state="pending"
    )
    assert delta("phonebridge_tasks", state="pending") == 2
    assert delta("phonebridge_tasks", state="completed") == 1
    assert delta("phonebridge_tasks", state="failed") == 0
    assert delta("phonebridge_due_tasks") == 1
    assert value(after, "phonebridge_oldest_due_task_age_seconds") == overdue_for.total_seconds()
    assert value(after, "phonebridge_deliveries", state="failed") is not None
    age = value(after, "phonebridge_store_snapshot_age_seconds")
    assert age is not None
    assert 0 <= age < 60


async def test_new_tasks_count_as_registered_and_a_task_id_given_again_does_not(
    settings: Settings,
) -> None:
    key = await create_client_and_key(settings, f"intake-{secrets.token_hex(3)}")
    new = [f"T-intake-{secrets.token_hex(4)}" for _ in range(3)]
    async with api_client(settings) as api:
        before = await scrape(api)
        single = await api.post("/v1/tasks", json={"task_id": new[0]}, headers=bearer(key))
        batch = await api.post(
            "/v1/tasks/batch",
            json={"tasks": [{"task_id": t} for t in (new[1], new[2], new[0], new[1])]},
            headers=bearer(key),
        )
        after = await scrape(api)

    assert single.status_code == 201, single.text
    assert batch.status_code == 200, batch.text
    registered = "phonebridge_tasks_registered_total"
    assert (value(after, registered) or 0) - (value(before, registered) or 0) == 3


async def test_a_snapshot_with_facts_this_process_does_not_know_is_still_read(
    redis_client: Redis[Any],
) -> None:
    # A newer scheduler, mid rolling upgrade, writes a fact an older API does not know yet.
    document = {
        "at": "2026-12-07T06:00:00+00:00",
        "tasks_by_state": {"pending": 1},
        "due_tasks": 1,
        "oldest_due_task_age_s": 2.0,
        "deliveries_by_state": {},
        "due_deliveries": 0,
        "oldest_due_delivery_age_s": 0.0,
        "a_fact_from_a_newer_release": 7,
    }
    await redis_client.set(SNAPSHOT_KEY, orjson.dumps(document))

    read = await read_snapshot(redis_client)

    assert read is not None
    assert read[1].due_tasks == 1


async def test_without_a_snapshot_the_scrape_answers_without_store_gauges(
    settings: Settings, redis_client: Redis[Any]
) -> None:
    await redis_client.delete(SNAPSHOT_KEY)
    async with api_client(settings) as api:
        samples = await scrape(api)
    assert value(samples, "phonebridge_redis_up") == 1
    assert value(samples, "phonebridge_upstream_paused", reason="") == 0
    assert not any(name == "phonebridge_tasks" for name, _ in samples)


async def test_pause_and_rate_limiter_state_are_read_at_scrape_time(
    settings: Settings, redis_client: Redis[Any]
) -> None:
    async with api_client(settings) as api:
        calm = await scrape(api)
        assert value(calm, "phonebridge_upstream_rate_factor") == 1
        assert value(calm, "phonebridge_upstream_effective_rps") == pytest.approx(
            settings.upstream_max_rps * SAFETY_FACTOR
        )

        limiter = UpstreamRateLimiter(redis_client, settings.upstream_max_rps)
        await limiter.slow_down()
        await limiter.block_for(30)
        await open_pause(redis_client, "KEY_EXPIRED", datetime.now(UTC))
        troubled = await scrape(api)
        await close_pause(redis_client)
        resumed = await scrape(api)

    assert value(troubled, "phonebridge_upstream_paused", reason="KEY_EXPIRED") == 1
    assert value(troubled, "phonebridge_upstream_paused", reason="") is None
    factor = value(troubled, "phonebridge_upstream_rate_factor")
    assert factor == pytest.approx(0.5, abs=0.05)
    assert value(troubled, "phonebridge_upstream_effective_rps") == pytest.approx(
        settings.upstream_max_rps * SAFETY_FACTOR * (factor or 0)
    )
    blocked = value(troubled, "phonebridge_upstream_blocked_seconds")
    assert blocked is not None
    assert 25 < blocked <= 30
    assert value(troubled, "phonebridge_upstream_rate_ceiling_rps") == settings.upstream_max_rps
    assert value(resumed, "phonebridge_upstream_paused", reason="") == 0


async def test_a_scrape_with_redis_down_still_answers_and_says_so(settings: Settings) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    broken = make_settings(settings.require_database_url(), dead_redis)
    async with api_client(broken) as api:
        samples = await scrape(api)
    assert value(samples, "phonebridge_redis_up") == 0
    assert value(samples, "phonebridge_database_up") == 1
    assert not any(name == "phonebridge_upstream_paused" for name, _ in samples)


async def test_a_scrape_with_postgres_down_still_answers_and_says_so(settings: Settings) -> None:
    dead_database = f"postgresql+psycopg://phonebridge@127.0.0.1:{free_port()}/phonebridge"
    broken = make_settings(dead_database, settings.require_redis_url())
    async with api_client(broken) as api:
        samples = await scrape(api)
    assert value(samples, "phonebridge_database_up") == 0
    assert value(samples, "phonebridge_redis_up") == 1


# --- the worker's and the scheduler's exporter ports ---------------------------------------------


async def leave_no_foreign_work(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Work earlier tests left pending would be claimed by the processes started here."""
    await cancel_pending_tasks(sessions)
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL,"
                " lease_token = NULL, lease_until = NULL WHERE state = 'pending'"
            )
        )


async def scrape_port(port: int) -> Samples:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    return parse(response.text)


async def eventually(port: int, condition: Any, timeout_s: float = 30.0) -> Samples:
    """Scrape `port` until `condition(samples)` holds (the processes work at their own pace)."""

    async def matching_scrape() -> Samples | None:
        try:
            samples = await scrape_port(port)
        except httpx.TransportError:
            return None
        return samples if condition(samples) else None

    samples: Samples = await wait_until_async(
        matching_scrape, timeout_s=timeout_s, interval_s=0.2, what=f"the metrics of :{port}"
    )
    return samples


@pytest.mark.slow  # real `phonebridge worker` and `scheduler` processes
async def test_worker_and_scheduler_export_polls_latency_claims_and_webhook_attempts(
    database_url: str,
    redis_url: str,
    sessions: async_sessionmaker[AsyncSession],
    fresh_sim: SimServer,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    await leave_no_foreign_work(sessions)
    worker_port, scheduler_port = free_port(), free_port()
    api_settings = make_settings(database_url, redis_url, webhook_allow_private=True)
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=database_url,
        PHONEBRIDGE_REDIS_URL=redis_url,
        PHONEBRIDGE_UPSTREAM_BASE_URL=fresh_sim.base_url,
        PHONEBRIDGE_UPSTREAM_API_ID=API_ID,
        PHONEBRIDGE_UPSTREAM_API_SECRET=API_SECRET,
        PHONEBRIDGE_SECRET_KEY=api_settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
        PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE="true",
        PHONEBRIDGE_WEBHOOK_RETRY_SCHEDULE="0.2,0.2",
        PHONEBRIDGE_POLL_INITIAL_S="0.2",
        PHONEBRIDGE_POLL_MAX_S="0.4",
        PHONEBRIDGE_SCHEDULER_TICK_S="0.05",
        PHONEBRIDGE_METRICS_REFRESH_S="0.2",
        PHONEBRIDGE_WORKER_METRICS_PORT=str(worker_port),
        PHONEBRIDGE_SCHEDULER_METRICS_PORT=str(scheduler_port),
    )
    receiver.script("/metrics-hook", Reply(status=500), Reply(status=503))
    key = await create_client_and_key(api_settings, f"metrics-{secrets.token_hex(3)}")
    headers = bearer(key)
    tasks = [f"sim-ring-1-metrics-{i}-{secrets.token_hex(3)}" for i in range(2)]
    processes = Processes(env, tmp_path)
    processes.start("worker")
    processes.start("scheduler")
    try:
        async with api_client(api_settings) as api:
            created = await api.post(
                "/v1/subscriptions", json={"url": receiver.url("/metrics-hook")}, headers=headers
            )
            assert created.status_code == 201, created.text
            for task_id in tasks:
                registered = await api.post("/v1/tasks", json={"task_id": task_id}, headers=headers)
                assert registered.status_code == 201, registered.text

            worker = await eventually(
                worker_port,
                lambda s: (value(s, "phonebridge_webhook_attempts_total", outcome="delivered",
                                 status_class="2xx") or 0) >= 2,
            )  # fmt: skip
            scheduler = await scrape_port(scheduler_port)
            store = await eventually_store(api)
    finally:
        processes.stop_all()

    assert (value(worker, "phonebridge_polls_total", outcome="pending") or 0) >= 2
    assert (value(worker, "phonebridge_polls_total", outcome="completed") or 0) >= 2
    assert (value(worker, "phonebridge_upstream_request_duration_seconds_count") or 0) >= 4
    assert (value(worker, "phonebridge_poll_schedule_delay_seconds_count") or 0) >= 4
    assert (
        value(worker, "phonebridge_webhook_attempts_total", outcome="retrying", status_class="5xx")
        or 0
    ) >= 2
    assert (value(worker, "phonebridge_webhook_attempt_duration_seconds_count") or 0) >= 4
    assert (value(scheduler, "phonebridge_poll_claims_total") or 0) >= 4
    # Every poll took a slot of the shared ceiling; each task ended once, completed.
    assert (value(worker, "phonebridge_upstream_call_slots_total") or 0) >= 4
    assert (value(worker, "phonebridge_tasks_finished_total", state="completed") or 0) >= 2
    assert value(worker, "phonebridge_tasks_finished_total", state="expired") == 0
    # First attempts go out from the worker that polled the task (leased in its write-back); the
    # two retries after the 500 and the 503 come through the scheduler's delivery claim.
    assert (value(scheduler, "phonebridge_delivery_claims_total") or 0) >= 2
    assert (value(store, "phonebridge_tasks", state="completed") or 0) >= 2
    # Bounded labels: no task id ever becomes a label value.
    labels = {v for samples in (worker, scheduler) for _, ls in samples for _, v in ls}
    assert not any(task_id in labels for task_id in tasks)


async def eventually_store(api: httpx.AsyncClient, timeout_s: float = 10.0) -> Samples:
    """The API's scrape once the scheduler has written a store snapshot."""

    async def scrape_with_snapshot() -> Samples | None:
        samples = await scrape(api)
        age = value(samples, "phonebridge_store_snapshot_age_seconds")
        return samples if age is not None else None

    samples: Samples = await wait_until_async(
        scrape_with_snapshot, timeout_s=timeout_s, interval_s=0.1, what="a store snapshot"
    )
    return samples
