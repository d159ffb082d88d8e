"""DeliveryDispatch (service/webhooks/dispatch.py), the scheduler's delivery step: due
deliveries are leased once and handed to the workers in batches of one lease token."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.store.db import transaction
from service.webhooks.dispatch import DeliveryDispatch
from tests.support.factories import emit_event, insert_client, insert_subscription
from tests.support.rows import deliveries_of_event


async def test_due_deliveries_are_leased_once_and_published_in_batches(
    hook_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id = await insert_client(sessions)
    for _ in range(2):
        await insert_subscription(sessions, client_id, ["task.completed"])
    events = [await emit_event(sessions, client_id) for _ in range(3)]
    async with transaction(sessions) as session:
        # Earlier tests' pending deliveries must not share this claim.
        await session.execute(
            text(
                "UPDATE deliveries SET next_attempt_at = now() + interval '1 day'"
                " WHERE state = 'pending' AND client_id <> :c"
            ),
            {"c": client_id},
        )
    ours = {row["id"] for event in events for row in await deliveries_of_event(sessions, event)}
    published: list[tuple[list[int], uuid.UUID]] = []
    dispatch = DeliveryDispatch(
        hook_settings, sessions, lambda ids, token: published.append((ids, token)), batch_size=4
    )

    await dispatch.run(utc_now() + timedelta(seconds=1))
    first_claim = list(published)
    await dispatch.run(utc_now() + timedelta(seconds=1))

    assert len(ours) == 6
    assert [len(ids) for ids, _ in first_claim] == [4, 2]
    assert {delivery for ids, _ in first_claim for delivery in ids} == ours
    [token] = {token for _, token in first_claim}
    leases = {row["lease_token"] for e in events for row in await deliveries_of_event(sessions, e)}
    assert leases == {token}
    # Leased: the next tick claims none of them again.
    assert published[len(first_claim) :] == []
