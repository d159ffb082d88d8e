"""A subscription's run of failures and its health in PostgreSQL (service/store/endpoint_health.py):
the run is read locked and written back, and the health counts the attempts of its window only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.endpoint_health import HEALTHY, FailureRun
from service.store.db import transaction
from service.store.endpoint_health import (
    lock_failure_runs,
    save_failure_runs,
    subscription_health,
)
from tests.support.factories import emit_event, insert_client, insert_subscription

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime.now(UTC)


async def public_id(sessions: Sessions, subscription_pk: int) -> str:
    async with sessions() as session:
        found = await session.execute(
            text("SELECT public_id FROM subscriptions WHERE id = :i"), {"i": subscription_pk}
        )
        return str(found.scalar_one())


async def test_a_run_of_failures_is_read_as_written(sessions: Sessions) -> None:
    client_id = await insert_client(sessions)
    first = await insert_subscription(sessions, client_id, ["task.completed"])
    second = await insert_subscription(sessions, client_id, ["task.completed"])
    failing = FailureRun(
        last_success_at=NOW - timedelta(days=1),
        failing_since=NOW - timedelta(hours=3),
        failures_in_row=7,
        schedule_exhausted=True,
    )
    async with transaction(sessions) as session:
        assert await lock_failure_runs(session, [second, first, second]) == {
            first: HEALTHY,
            second: HEALTHY,
        }
        await save_failure_runs(session, {first: failing})
    async with transaction(sessions) as session:
        assert await lock_failure_runs(session, [first, second]) == {
            first: failing,
            second: HEALTHY,
        }


async def test_the_health_counts_the_attempts_of_its_window_only(sessions: Sessions) -> None:
    client_id = await insert_client(sessions)
    other_client = await insert_client(sessions)
    subscription = await insert_subscription(sessions, client_id, ["task.completed"])
    quiet = await insert_subscription(sessions, client_id, ["task.completed"])
    await emit_event(sessions, client_id)
    attempts = [(200, 10 * i) for i in range(1, 20)] + [(500, 1000), (None, 5000)]
    async with transaction(sessions) as session:
        delivery = (
            await session.execute(
                text("SELECT id FROM deliveries WHERE subscription_id = :s"), {"s": subscription}
            )
        ).scalar_one()
        for status, latency in [*attempts, (200, 99_999)]:
            await session.execute(
                text(
                    "INSERT INTO delivery_attempts (delivery_id, subscription_id, at,"
                    " response_status, latency_ms) VALUES (:d, :s, :at, :status, :latency)"
                ),
                {
                    "d": delivery,
                    "s": subscription,
                    # The last one is older than the window.
                    "at": NOW - timedelta(minutes=90 if latency == 99_999 else 5),
                    "status": status,
                    "latency": latency,
                },
            )
        await save_failure_runs(
            session, {subscription: FailureRun(NOW, NOW + timedelta(seconds=1), 2, False)}
        )
        health = await subscription_health(
            session, client_id, [subscription, quiet], NOW - timedelta(hours=1)
        )
        foreign = await subscription_health(
            session, other_client, [subscription], NOW - timedelta(hours=1)
        )
    shown = health[await public_id(sessions, subscription)]
    assert (shown.attempts, shown.succeeded) == (21, 19)
    assert shown.success_rate == 19 / 21
    assert shown.p95_latency_ms is not None
    assert 190 < shown.p95_latency_ms <= 1000
    assert (shown.last_success_at, shown.failures_in_row) == (NOW, 2)
    silent = health[await public_id(sessions, quiet)]
    assert (silent.attempts, silent.success_rate, silent.p95_latency_ms) == (0, None, None)
    assert foreign == {}
