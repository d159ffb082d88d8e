"""AttemptWriteBack (service/webhooks/write_back.py): each finished attempt decided and written
under its lease: delivered, retried on the schedule, failed with its subscription disabled on a
410, and 'lost' (changing nothing) when the lease has passed to someone else."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.store.db import transaction
from service.store.deliveries import LeasedDelivery, load_leased_deliveries
from service.webhooks.sender import AttemptResult
from service.webhooks.write_back import AttemptWriteBack
from tests.support.factories import emit_event, insert_client, insert_subscription
from tests.support.rows import deliveries_of_event

RETRY_SCHEDULE = (60.0, 600.0)
DISABLE_AFTER_S = 3600.0


@pytest.fixture
async def write_back(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AttemptWriteBack]:
    writer = AttemptWriteBack(
        RETRY_SCHEDULE,
        sessions,
        asyncio.Semaphore(1),
        disable_after_s=DISABLE_AFTER_S,
        clock=utc_now,
        rand=lambda: 0.5,
    )
    yield writer
    await writer.close()


async def leased_delivery(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[str, LeasedDelivery, uuid.UUID, int]:
    """A new event's one delivery, leased to a token of the test's own: the event's id, the
    leased row, the token and the subscription's row id."""
    client_id = await insert_client(sessions)
    subscription_pk = await insert_subscription(sessions, client_id, ["task.completed"])
    event_id = await emit_event(sessions, client_id)
    [delivery] = await deliveries_of_event(sessions, event_id)
    token = uuid.uuid4()
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE deliveries SET lease_token = :t, lease_until = now() + interval '1 minute'"
                " WHERE id = :i"
            ),
            {"t": token, "i": delivery["id"]},
        )
        [row] = await load_leased_deliveries(session, [delivery["id"]], token, utc_now())
    return event_id, row, token, subscription_pk


def attempt(status: int | None, at: datetime, error: str | None = None) -> AttemptResult:
    return AttemptResult(
        at=at, status=status, latency_ms=12, error=error, response_excerpt=None, retry_after=None
    )


async def test_a_2xx_is_written_as_succeeded_with_its_attempt(
    sessions: async_sessionmaker[AsyncSession], write_back: AttemptWriteBack
) -> None:
    event_id, row, token, _ = await leased_delivery(sessions)

    state = await write_back.record(row, attempt(204, utc_now()), token)

    [stored] = await deliveries_of_event(sessions, event_id)
    assert state == "succeeded"
    assert (stored["state"], stored["attempt_count"], stored["last_response_status"]) == (
        "succeeded",
        1,
        204,
    )


async def test_a_failed_attempt_is_retried_after_the_first_delay_of_the_schedule(
    sessions: async_sessionmaker[AsyncSession], write_back: AttemptWriteBack
) -> None:
    event_id, row, token, _ = await leased_delivery(sessions)
    before = utc_now()

    state = await write_back.record(row, attempt(500, before), token)

    [stored] = await deliveries_of_event(sessions, event_id)
    assert state == "pending"
    assert stored["attempt_count"] == 1
    # The first delay (60 s) with its ±20% jitter.
    delay = stored["next_attempt_at"] - before
    assert timedelta(seconds=48) <= delay <= timedelta(seconds=73)


async def test_a_410_fails_the_delivery_and_disables_its_subscription_as_gone(
    sessions: async_sessionmaker[AsyncSession], write_back: AttemptWriteBack
) -> None:
    event_id, row, token, subscription_pk = await leased_delivery(sessions)

    state = await write_back.record(row, attempt(410, utc_now()), token)

    [stored] = await deliveries_of_event(sessions, event_id)
    async with sessions() as session:
        enabled, reason = (
            await session.execute(
                text("SELECT enabled, disabled_reason FROM subscriptions WHERE id = :i"),
                {"i": subscription_pk},
            )
        ).one()
    assert state == "failed"
    assert stored["state"] == "failed"
    assert enabled is False
    assert reason == "gone"


async def test_an_attempt_whose_lease_passed_on_is_lost_and_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], write_back: AttemptWriteBack
) -> None:
    event_id, row, _, _ = await leased_delivery(sessions)

    state = await write_back.record(row, attempt(204, utc_now()), uuid.uuid4())

    [stored] = await deliveries_of_event(sessions, event_id)
    assert state is None  # lost: nothing was written
    assert (stored["state"], stored["attempt_count"]) == ("pending", 0)
