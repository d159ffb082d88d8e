"""From POST /v1/tasks, through the upstream simulator, a real Celery worker and the scheduler, to
a webhook whose signature the `standardwebhooks` package verifies."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
from celery.contrib.testing.worker import start_worker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from service.config import Settings
from service.engine.scheduler import Scheduler, SchedulerContext
from service.runtime import scheduler_steps
from service.sim.server import SimServer
from service.store.db import create_engine_for, session_factory
from service.upstream.ratelimit import UpstreamRateLimiter
from tests.support.api import api_client
from tests.support.factories import new_client
from tests.support.receivers import Receiver
from tests.support.settings import webhook_settings
from tests.support.waiting import wait_until_async
from workers.app import (
    celery_delivery_publisher,
    celery_poll_publisher,
    create_celery_app,
    runtime_of,
)


@asynccontextmanager
async def running_service(settings: Settings, *, delivery_step: bool = True) -> AsyncIterator[None]:
    """A Celery worker (threads pool) and the scheduler with every step, polls and deliveries
    (without the delivery claims when `delivery_step` is False)."""
    app = create_celery_app(settings, queue=f"phonebridge-webhooks-{secrets.token_hex(4)}")
    db = create_engine_for(settings.sqlalchemy_url, pool_size=2)
    redis: Redis[Any] = Redis.from_url(settings.require_redis_url())
    context = SchedulerContext(
        settings=settings,
        sessions=session_factory(db),
        redis=redis,
        limiter=UpstreamRateLimiter(redis, settings.upstream_max_rps),
        publish_poll=celery_poll_publisher(app),
    )
    publish_delivery = celery_delivery_publisher(app) if delivery_step else None
    scheduler = Scheduler(
        scheduler_steps(context, publish_delivery),
        tick_s=settings.scheduler_tick_s,
        clock=lambda: datetime.now(UTC),
    )
    stop = asyncio.Event()
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"
    ):
        loop = asyncio.create_task(scheduler.run_until(stop))
        try:
            yield
        finally:
            stop.set()
            await loop
    runtime_of(app).stop()
    await redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
    await db.dispose()


async def test_a_registered_task_ends_as_a_verified_webhook(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    settings = webhook_settings(
        database_url,
        redis_url,
        upstream_base_url=fresh_sim.base_url,
        upstream_max_rps=500.0,
        scheduler_tick_s=0.05,
        poll_initial_s=0.2,
        poll_max_s=0.4,
    )
    path = f"/{secrets.token_hex(6)}"
    task_id = f"sim-ring-2-{secrets.token_hex(3)}"
    async with api_client(settings) as api:
        client = await new_client(settings, sessions)
        subscribed = await api.post(
            "/v1/subscriptions", json={"url": receiver.url(path)}, headers=client.headers
        )
        secret = subscribed.json()["secret"]
        registered = await api.post(
            "/v1/tasks", json={"task_id": task_id, "metadata": {"k": "v"}}, headers=client.headers
        )
        assert registered.status_code == 201, registered.text
        async with running_service(settings):
            await receiver.wait_for(1, path, timeout=20)
            # The attempt is written just after the receiver answered; stopping the worker
            # before that would leave it to be sent again (at least once), not recorded.
            await wait_until_async(
                partial(_delivery_recorded, api, client.headers, task_id),
                what="the attempt's write-back",
            )
        [request] = receiver.received(path)
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["type"] == "task.completed"
        assert payload["data"]["task_id"] == task_id
        assert payload["data"]["state"] == "completed"
        assert payload["data"]["result"]["phone_status"] == "ring"
        assert payload["data"]["metadata"] == {"k": "v"}
        events = (await api.get("/v1/events", headers=client.headers)).json()["data"]
        [event] = [e for e in events if e["data"]["task_id"] == task_id]
        assert request.headers["webhook-id"] == event["id"]
        assert json.loads(request.body)["data"] == event["data"]
        deliveries = await api.get(f"/v1/events/{event['id']}/deliveries", headers=client.headers)
        [delivery] = deliveries.json()["data"]
        assert (delivery["state"], delivery["attempt_count"]) == ("succeeded", 1)


async def test_a_result_is_sent_by_the_worker_that_polled_it_without_a_delivery_claim(
    database_url: str,
    redis_url: str,
    fresh_sim: SimServer,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The write-back leases the new deliveries to the polling worker, which sends them at once:
    no scheduler delivery step runs here, and the webhook still arrives, recorded once."""
    settings = webhook_settings(
        database_url,
        redis_url,
        upstream_base_url=fresh_sim.base_url,
        upstream_max_rps=500.0,
        scheduler_tick_s=0.05,
    )
    path = f"/{secrets.token_hex(6)}"
    task_id = f"sim-ring-0-{secrets.token_hex(3)}"
    async with api_client(settings) as api:
        client = await new_client(settings, sessions)
        subscribed = await api.post(
            "/v1/subscriptions", json={"url": receiver.url(path)}, headers=client.headers
        )
        assert subscribed.status_code == 201, subscribed.text
        registered = await api.post("/v1/tasks", json={"task_id": task_id}, headers=client.headers)
        assert registered.status_code == 201, registered.text
        async with running_service(settings, delivery_step=False):
            await receiver.wait_for(1, path, timeout=20)
            await wait_until_async(
                partial(_delivery_recorded, api, client.headers, task_id),
                what="the attempt's write-back",
            )
        [request] = receiver.received(path)
        assert Webhook(subscribed.json()["secret"]).verify(request.body, request.headers)


async def _delivery_recorded(api: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> bool:
    events = (await api.get("/v1/events", headers=headers)).json()["data"]
    mine = [e for e in events if e["data"]["task_id"] == task_id]
    if not mine:
        return False
    deliveries = await api.get(f"/v1/events/{mine[0]['id']}/deliveries", headers=headers)
    return any(d["state"] == "succeeded" for d in deliveries.json()["data"])
