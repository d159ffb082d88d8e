"""A paced subscription's deliveries (max_rps) in a worker's batch: the near turns are sent at
their turns, the far ones wait in their rows holding a turn, and neither uses up an attempt; a
worker that dies while deliveries wait for their turns loses none of them; a new pace sends the
waiting rows to take turns of it. The claim and the batch are run by hand (`pump`)."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.domain.pacing import HOLD_S, most_in_any_window, turn_interval_s
from service.heartbeat import LeaseKeeper
from service.webhooks.batch_delivery import DeliveryService
from service.webhooks.encryption import cipher_for
from service.webhooks.sender import WebhookSender
from tests.support.deliveries import Pump
from tests.support.factories import ApiClient, emit_event, new_client
from tests.support.receivers import Receiver
from tests.support.waiting import wait_until_async

Sessions = async_sessionmaker[AsyncSession]


async def paced_subscription(
    api: httpx.AsyncClient, who: ApiClient, url: str, max_rps: int
) -> dict[str, Any]:
    response = await api.post(
        "/v1/subscriptions", json={"url": url, "max_rps": max_rps}, headers=who.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["max_rps"] == max_rps
    created: dict[str, Any] = response.json()
    return created


async def deliveries_to(sessions: Sessions, subscription_id: str) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(
            text(
                """
                SELECT d.*, e.public_id AS event_public_id FROM deliveries d
                JOIN subscriptions s ON s.id = d.subscription_id JOIN events e ON e.id = d.event_id
                WHERE s.public_id = :s ORDER BY d.id
                """
            ),
            {"s": subscription_id},
        )
        return [dict(row._mapping) for row in result]


async def test_a_burst_goes_out_at_its_turns_and_the_rest_waits_in_rows_without_an_attempt(
    api: httpx.AsyncClient,
    hook_settings: Settings,
    receiver: Receiver,
    pump: Pump,
    sessions: Sessions,
) -> None:
    client = await new_client(hook_settings, sessions)
    path = f"/paced-{secrets.token_hex(4)}"
    sub = await paced_subscription(api, client, receiver.url(path), max_rps=2)
    events = [await emit_event(sessions, client.id) for _ in range(6)]

    report = await pump.once()

    # Two a second (with the margin, 0.55 s apart): the turns within HOLD_S went out at them,
    # but for any the loop made too late for its turn (a loaded machine): those went back to
    # their rows, due now, to take another. The others wait in their rows for their turns.
    arrivals = [request.arrived for request in receiver.received(path)]
    assert len(arrivals) + report.missed_turn == 4
    assert len(arrivals) >= 1
    assert report.waiting_for_turn == 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap > turn_interval_s(2) - 0.05 for gap in gaps)
    assert most_in_any_window(arrivals) <= 2
    rows = await deliveries_to(sessions, sub["id"])
    sent = [row for row in rows if row["attempt_count"] == 1]
    assert len(sent) == len(arrivals)
    assert all(row["state"] == "succeeded" and row["turn_at"] is None for row in sent)
    waiting = [row for row in rows if row["turn_at"] is not None]
    assert len(waiting) == 2
    for row in waiting:
        assert (row["state"], row["attempt_count"], row["lease_token"]) == ("pending", 0, None)
        assert row["next_attempt_at"] == row["turn_at"] - timedelta(seconds=HOLD_S)
    missed = [row for row in rows if row["attempt_count"] == 0 and row["turn_at"] is None]
    assert len(missed) == report.missed_turn
    assert all(row["state"] == "pending" and row["lease_token"] is None for row in missed)
    assert {row["event_public_id"] for row in rows} == set(events)
    # The rows still waiting would be the next test's to send: they stop with the subscription.
    await api.delete(f"/v1/subscriptions/{sub['id']}", headers=client.headers)


async def test_a_worker_that_dies_while_deliveries_wait_for_their_turns_loses_none(
    api: httpx.AsyncClient,
    hook_settings: Settings,
    receiver: Receiver,
    pump: Pump,
    sessions: Sessions,
) -> None:
    client = await new_client(hook_settings, sessions)
    path = f"/paced-{secrets.token_hex(4)}"
    sub = await paced_subscription(api, client, receiver.url(path), max_rps=2)
    events = [await emit_event(sessions, client.id) for _ in range(3)]
    doomed = DeliveryService(
        hook_settings,
        sessions,
        WebhookSender(hook_settings.webhook_timeout_s, allow_private=True),
        cipher_for(hook_settings),
        LeaseKeeper(sessions, hook_settings.lease_s, clock=pump.clock),
        clock=pump.clock,
    )
    token, ids = await pump.claim()
    await doomed.start_batch(ids, token)

    # Its first turn is now; the others (0.55 and 1.1 s on) wait in the worker when it dies.
    await receiver.wait_for(1, path)

    async def first_written() -> bool:
        rows = await deliveries_to(sessions, sub["id"])
        return any(row["state"] == "succeeded" for row in rows)

    await wait_until_async(first_written, what="the first attempt's write-back")
    await doomed.close()
    await asyncio.sleep(0)
    rows = await deliveries_to(sessions, sub["id"])
    assert [row["attempt_count"] for row in rows if row["state"] == "pending"] == [0, 0]

    # Its leases run out; another worker takes them and sends each once.
    pump.clock.advance(hook_settings.lease_s + 1)
    for _ in range(3):
        await pump.once()
        if len(receiver.received(path)) == 3:
            break
    received = Counter(request.headers["webhook-id"] for request in receiver.received(path))
    assert received == Counter(dict.fromkeys(events, 1))
    rows = await deliveries_to(sessions, sub["id"])
    assert [(row["state"], row["attempt_count"]) for row in rows] == [("succeeded", 1)] * 3


async def test_a_new_pace_sends_the_deliveries_waiting_in_their_rows_to_take_its_turns(
    api: httpx.AsyncClient,
    hook_settings: Settings,
    receiver: Receiver,
    pump: Pump,
    sessions: Sessions,
) -> None:
    client = await new_client(hook_settings, sessions)
    path = f"/paced-{secrets.token_hex(4)}"
    sub = await paced_subscription(api, client, receiver.url(path), max_rps=1)
    for _ in range(4):
        await emit_event(sessions, client.id)
    await pump.once()  # turns at 0 and 1.1 s go out; 2.2 and 3.3 s wait in their rows
    waiting = [row for row in await deliveries_to(sessions, sub["id"]) if row["turn_at"]]
    assert len(waiting) == 2

    same = await api.patch(
        f"/v1/subscriptions/{sub['id']}", json={"max_rps": 1}, headers=client.headers
    )
    assert same.status_code == 200
    kept = [row["turn_at"] for row in await deliveries_to(sessions, sub["id"]) if row["turn_at"]]
    assert kept == [row["turn_at"] for row in waiting]

    faster = await api.patch(
        f"/v1/subscriptions/{sub['id']}", json={"max_rps": 50}, headers=client.headers
    )
    assert faster.json()["max_rps"] == 50
    rows = await deliveries_to(sessions, sub["id"])
    assert all(row["turn_at"] is None for row in rows)
    await pump.once()
    assert len(receiver.received(path)) == 4

    unlimited = await api.patch(
        f"/v1/subscriptions/{sub['id']}", json={"max_rps": None}, headers=client.headers
    )
    assert unlimited.json()["max_rps"] is None
