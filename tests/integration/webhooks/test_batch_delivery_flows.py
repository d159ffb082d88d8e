"""Delivering events to real local receivers: signatures, retries, failures, redelivery,
recovery, filters and isolation. The scheduler's claim and the worker's batch are run by hand
(`pump`) with a clock the test moves, so retries come due without waiting."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.api.app import create_app
from service.config import Settings
from service.domain.delivery import POSTPONE_S
from service.heartbeat import LeaseKeeper
from service.store.db import transaction
from service.webhooks.batch_delivery import DeliveryService
from service.webhooks.encryption import cipher_for
from service.webhooks.sender import WebhookSender
from tests.support.api import asgi_client
from tests.support.deliveries import FakeClock, Pump
from tests.support.factories import ApiClient, emit_event, new_client
from tests.support.receivers import Receiver, Reply, refused_port
from tests.support.rows import deliveries_of_event
from tests.support.settings import webhook_settings
from tests.support.waiting import wait_until_async

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def client(hook_settings: Settings, sessions: Sessions) -> ApiClient:
    return await new_client(hook_settings, sessions)


def _path() -> str:
    return f"/{secrets.token_hex(6)}"


async def _subscribe(
    api: httpx.AsyncClient, who: ApiClient, url: str, **body: Any
) -> dict[str, Any]:
    response = await api.post("/v1/subscriptions", json={"url": url, **body}, headers=who.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _deliveries(api: httpx.AsyncClient, who: ApiClient, event_id: str) -> list[Any]:
    response = await api.get(f"/v1/events/{event_id}/deliveries", headers=who.headers)
    assert response.status_code == 200, response.text
    data: list[Any] = response.json()["data"]
    return data


async def test_a_delivered_webhook_is_signed_per_standard_webhooks_and_recorded(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    sub = await _subscribe(api, client, receiver.url(path))
    event_id = await emit_event(sessions, client.id, "completed", task_id="T-signed")
    report = await pump.once()
    assert report.succeeded >= 1
    [request] = receiver.received(path)
    payload = Webhook(sub["secret"]).verify(request.body, request.headers)
    event = (await api.get(f"/v1/events/{event_id}", headers=client.headers)).json()
    assert payload == {
        "type": "task.completed",
        "timestamp": event["created_at"],
        "data": event["data"],
    }
    assert payload["data"]["task_id"] == "T-signed"
    assert payload["data"]["result"] == {
        "phone_number": "0062********",
        "phone_status": "ring",
        "verdict": "live",
    }
    assert request.headers["webhook-id"] == event_id
    assert request.headers["content-type"] == "application/json"
    assert abs(int(request.headers["webhook-timestamp"]) - pump.clock().timestamp()) < 5
    [delivery] = await _deliveries(api, client, event_id)
    assert delivery["subscription_id"] == sub["id"]
    assert (delivery["state"], delivery["attempt_count"]) == ("succeeded", 1)
    assert (delivery["last_response_status"], delivery["last_error"]) == (200, None)
    assert delivery["next_attempt_at"] is None
    [attempt] = delivery["attempts"]
    assert (attempt["response_status"], attempt["error"], attempt["response_excerpt"]) == (
        200,
        None,
        "ok",
    )
    assert attempt["latency_ms"] >= 0


async def test_a_500_is_retried_on_schedule_and_then_succeeds(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    receiver.script(path, Reply(status=500, body=b"boom"))
    await _subscribe(api, client, receiver.url(path))
    event_id = await emit_event(sessions, client.id)
    await pump.once()
    [delivery] = await _deliveries(api, client, event_id)
    assert (delivery["state"], delivery["attempt_count"]) == ("pending", 1)
    assert (delivery["last_response_status"], delivery["last_error"]) == (500, "HTTP 500")
    delay = datetime.fromisoformat(delivery["next_attempt_at"]) - datetime.fromisoformat(
        delivery["last_attempt_at"]
    )
    assert timedelta(seconds=0.7) < delay < timedelta(seconds=1.3)  # 1 s ±20%
    await pump.once()  # not due yet: nothing is sent
    assert len(receiver.received(path)) == 1
    pump.clock.advance(1.3)
    await pump.once()
    [delivery] = await _deliveries(api, client, event_id)
    assert (delivery["state"], delivery["attempt_count"]) == ("succeeded", 2)
    assert [a["response_status"] for a in delivery["attempts"]] == [500, 200]
    assert delivery["attempts"][0]["response_excerpt"] == "boom"
    first, second = receiver.received(path)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event_id


async def test_a_timeout_is_retried_and_then_succeeds(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    receiver.script(path, Reply(delay_s=2.0))
    await _subscribe(api, client, receiver.url(path))
    event_id = await emit_event(sessions, client.id)
    await pump.once()
    [delivery] = await _deliveries(api, client, event_id)
    assert delivery["state"] == "pending"
    assert delivery["last_error"] == "timed out after 0.5 s"
    assert delivery["attempts"][0]["response_status"] is None
    pump.clock.advance(1.3)
    await pump.once()
    [delivery] = await _deliveries(api, client, event_id)
    assert (delivery["state"], delivery["attempt_count"]) == ("succeeded", 2)


async def test_a_redirect_is_a_failure_and_is_not_followed(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path, elsewhere = _path(), _path()
    receiver.script(path, default=Reply(status=307, headers={"location": receiver.url(elsewhere)}))
    await _subscribe(api, client, receiver.url(path))
    event_id = await emit_event(sessions, client.id)
    await pump.once()
    [delivery] = await _deliveries(api, client, event_id)
    assert delivery["state"] == "pending"
    assert delivery["last_response_status"] == 307
    assert "redirects are not followed" in delivery["last_error"]
    assert receiver.received(elsewhere) == []


async def test_410_disables_the_subscription_and_stops_its_pending_deliveries(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    receiver.script(path, Reply(status=500), default=Reply(status=410))
    sub = await _subscribe(api, client, receiver.url(path))
    first = await emit_event(sessions, client.id)
    await pump.once()  # 500: the first delivery waits for its retry
    second = await emit_event(sessions, client.id, "expired")
    await pump.once()  # 410 on the second event
    shown = (await api.get(f"/v1/subscriptions/{sub['id']}", headers=client.headers)).json()
    assert shown["enabled"] is False
    assert shown["disabled_reason"] == "gone"
    [gone] = await _deliveries(api, client, second)
    assert (gone["state"], gone["last_response_status"]) == ("failed", 410)
    [stopped] = await _deliveries(api, client, first)
    assert stopped["state"] == "failed"
    assert stopped["next_attempt_at"] is None
    assert "disabled" in stopped["last_error"]
    pump.clock.advance(5)
    await pump.once()
    assert len(receiver.received(path)) == 2
    third = await emit_event(sessions, client.id)
    assert await _deliveries(api, client, third) == []


async def test_connection_refused_fails_after_the_last_attempt_and_can_be_redelivered(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    sub = await _subscribe(api, client, f"http://127.0.0.1:{refused_port()}/hook")
    event_id = await emit_event(sessions, client.id)
    for _ in range(3):  # the schedule (1, 1) allows three attempts
        await pump.once()
        pump.clock.advance(1.3)
    [delivery] = await _deliveries(api, client, event_id)
    assert (delivery["state"], delivery["attempt_count"]) == ("failed", 3)
    assert delivery["last_error"] == "connection refused"
    assert [a["error"] for a in delivery["attempts"]] == ["connection refused"] * 3
    await pump.once()
    assert (await _deliveries(api, client, event_id))[0]["attempt_count"] == 3

    path = _path()
    await api.patch(
        f"/v1/subscriptions/{sub['id']}", json={"url": receiver.url(path)}, headers=client.headers
    )
    response = await api.post(f"/v1/events/{event_id}/redeliver", headers=client.headers)
    assert response.status_code == 202
    [put_back] = response.json()["data"]
    assert (put_back["state"], put_back["attempt_count"]) == ("pending", 3)
    await pump.once()
    [delivery] = await _deliveries(api, client, event_id)
    assert (delivery["state"], delivery["attempt_count"]) == ("succeeded", 4)
    Webhook(sub["secret"]).verify(
        receiver.received(path)[0].body, receiver.received(path)[0].headers
    )


async def test_redeliver_starts_a_fresh_schedule(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    receiver.script(path, default=Reply(status=503))
    sub = await _subscribe(api, client, receiver.url(path))
    event_id = await emit_event(sessions, client.id)
    for _ in range(3):
        await pump.once()
        pump.clock.advance(1.3)
    assert (await _deliveries(api, client, event_id))[0]["state"] == "failed"
    response = await api.post(
        f"/v1/events/{event_id}/redeliver",
        json={"subscription_id": sub["id"]},
        headers=client.headers,
    )
    assert response.status_code == 202
    # A fresh schedule: three more attempts before it fails again.
    for expected in (4, 5):
        await pump.once()
        pump.clock.advance(1.3)
        [delivery] = await _deliveries(api, client, event_id)
        assert (delivery["state"], delivery["attempt_count"]) == ("pending", expected)
    await pump.once()
    [delivery] = await _deliveries(api, client, event_id)
    assert (delivery["state"], delivery["attempt_count"]) == ("failed", 6)


async def test_redeliver_answers_404_for_unknown_targets(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, sessions: Sessions
) -> None:
    await _subscribe(api, client, receiver.url(_path()))
    event_id = await emit_event(sessions, client.id)
    missing = await api.post("/v1/events/evt_nope/redeliver", headers=client.headers)
    assert missing.status_code == 404
    wrong_sub = await api.post(
        f"/v1/events/{event_id}/redeliver",
        json={"subscription_id": "sub_unknown"},
        headers=client.headers,
    )
    assert wrong_sub.status_code == 404
    assert (
        await api.get("/v1/events/evt_nope/deliveries", headers=client.headers)
    ).status_code == 404


async def test_retry_after_on_429_lengthens_the_next_delay(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    receiver.script(path, Reply(status=429, headers={"retry-after": "2"}))
    await _subscribe(api, client, receiver.url(path))
    event_id = await emit_event(sessions, client.id)
    await pump.once()
    [delivery] = await _deliveries(api, client, event_id)
    delay = datetime.fromisoformat(delivery["next_attempt_at"]) - pump.clock()
    assert timedelta(seconds=1.5) < delay <= timedelta(seconds=2.0)  # twice the scheduled 1 s


async def test_rotation_signs_with_both_secrets_for_a_day(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    sub = await _subscribe(api, client, receiver.url(path))
    rotated = await api.post(f"/v1/subscriptions/{sub['id']}/rotate-secret", headers=client.headers)
    new_secret = rotated.json()["secret"]
    await emit_event(sessions, client.id)
    await pump.once()
    [request] = receiver.received(path)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(sub["secret"]).verify(request.body, request.headers)
    Webhook(new_secret).verify(request.body, request.headers)

    # Once the overlap has passed (moved into the past here) only the new secret signs.
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE subscriptions SET previous_secret_expires_at = now() - interval '1 second'"
                " WHERE public_id = :p"
            ),
            {"p": sub["id"]},
        )
    await emit_event(sessions, client.id)
    await pump.once()
    later = receiver.received(path)[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(later.body, later.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(sub["secret"]).verify(later.body, later.headers)


async def test_recover_resends_what_failed_in_the_window(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    receiver.script(path, Reply(status=500), Reply(status=500), Reply(status=500))
    sub = await _subscribe(api, client, receiver.url(path))
    event_id = await emit_event(sessions, client.id)
    for _ in range(3):
        await pump.once()
        pump.clock.advance(1.3)
    [failed] = await _deliveries(api, client, event_id)
    assert failed["state"] == "failed"
    window_start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    window_end = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    empty = await api.post(
        f"/v1/subscriptions/{sub['id']}/recover",
        json={"since": window_start, "until": window_end},
        headers=client.headers,
    )
    assert empty.json()["recovered"] == 0
    response = await api.post(
        f"/v1/subscriptions/{sub['id']}/recover",
        json={"since": window_start},
        headers=client.headers,
    )
    assert response.status_code == 202
    assert response.json()["recovered"] == 1
    await pump.once()
    [delivery] = await _deliveries(api, client, event_id)
    assert (delivery["state"], delivery["attempt_count"]) == ("succeeded", 4)


async def test_event_type_filters_choose_the_subscriptions(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    failed_only, everything = _path(), _path()
    failed_sub = await _subscribe(
        api, client, receiver.url(failed_only), event_types=["task.failed"]
    )
    all_sub = await _subscribe(api, client, receiver.url(everything))
    completed = await emit_event(sessions, client.id, "completed")
    failed = await emit_event(sessions, client.id, "failed")
    assert [d["subscription_id"] for d in await _deliveries(api, client, completed)] == [
        all_sub["id"]
    ]
    assert sorted(d["subscription_id"] for d in await _deliveries(api, client, failed)) == sorted(
        [failed_sub["id"], all_sub["id"]]
    )
    await pump.once()
    assert [json.loads(r.body)["type"] for r in receiver.received(failed_only)] == ["task.failed"]
    assert sorted(json.loads(r.body)["type"] for r in receiver.received(everything)) == [
        "task.completed",
        "task.failed",
    ]


async def test_clients_never_see_or_receive_each_others_events(
    api: httpx.AsyncClient,
    hook_settings: Settings,
    receiver: Receiver,
    pump: Pump,
    sessions: Sessions,
) -> None:
    alice, bob = (
        await new_client(hook_settings, sessions),
        await new_client(hook_settings, sessions),
    )
    alice_path, bob_path = _path(), _path()
    await _subscribe(api, alice, receiver.url(alice_path))
    bob_sub = await _subscribe(api, bob, receiver.url(bob_path))
    event_id = await emit_event(sessions, alice.id)
    await pump.once()
    assert len(receiver.received(alice_path)) == 1
    assert receiver.received(bob_path) == []
    assert (
        await api.get(f"/v1/events/{event_id}/deliveries", headers=bob.headers)
    ).status_code == 404
    redeliver = await api.post(f"/v1/events/{event_id}/redeliver", headers=bob.headers)
    assert redeliver.status_code == 404
    as_alice = await api.post(
        f"/v1/events/{event_id}/redeliver",
        json={"subscription_id": bob_sub["id"]},
        headers=alice.headers,
    )
    assert as_alice.status_code == 404


async def test_deleting_a_subscription_stops_its_pending_deliveries(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    receiver.script(path, Reply(status=500))
    sub = await _subscribe(api, client, receiver.url(path))
    event_id = await emit_event(sessions, client.id)
    await pump.once()
    assert (
        await api.delete(f"/v1/subscriptions/{sub['id']}", headers=client.headers)
    ).status_code == 204
    pump.clock.advance(5)
    await pump.once()
    assert len(receiver.received(path)) == 1
    [delivery] = await _deliveries(api, client, event_id)
    assert delivery["state"] == "failed"
    assert "deleted" in delivery["last_error"]


async def test_a_stale_lease_token_sends_and_writes_nothing(
    api: httpx.AsyncClient, client: ApiClient, receiver: Receiver, pump: Pump, sessions: Sessions
) -> None:
    path = _path()
    await _subscribe(api, client, receiver.url(path))
    event_id = await emit_event(sessions, client.id)
    token, ids = await pump.claim()
    report = await pump.service.deliver_batch(ids, uuid.uuid4())
    assert report.attempted == 0
    assert receiver.received(path) == []
    assert (await deliveries_of_event(sessions, event_id))[0]["attempt_count"] == 0
    await pump.service.deliver_batch(ids, token)
    assert len(receiver.received(path)) == 1


async def test_a_dead_receiver_does_not_delay_deliveries_to_others(
    api: httpx.AsyncClient,
    hook_settings: Settings,
    receiver: Receiver,
    pump: Pump,
    sessions: Sessions,
) -> None:
    dead, healthy = _path(), _path()
    receiver.script(dead, default=Reply(hang=True))
    slow_client = await new_client(hook_settings, sessions)
    fast_client = await new_client(hook_settings, sessions)
    await _subscribe(api, slow_client, receiver.url(dead))
    await _subscribe(api, fast_client, receiver.url(healthy))
    slow_events = [await emit_event(sessions, slow_client.id) for _ in range(5)]
    fast_events = [await emit_event(sessions, fast_client.id) for _ in range(5)]
    token, ids = await pump.claim()
    await pump.service.start_batch(ids, token)  # one batch holding both receivers' deliveries

    async def fast_ones_written() -> bool:
        rows = [(await deliveries_of_event(sessions, e))[0] for e in fast_events]
        return all(row["state"] == "succeeded" for row in rows)

    await wait_until_async(fast_ones_written, interval_s=0.02, what="the healthy deliveries")
    # The healthy receiver's results are in the database while the dead one still holds on.
    slow_rows = [(await deliveries_of_event(sessions, e))[0] for e in slow_events]
    assert [row["attempt_count"] for row in slow_rows] == [0] * 5
    await pump.service.drain()
    slow_rows = [(await deliveries_of_event(sessions, e))[0] for e in slow_events]
    assert all(row["last_error"] == "timed out after 0.5 s" for row in slow_rows)


async def test_a_subscription_that_stops_answering_has_its_overflow_held_back_longer(
    api: httpx.AsyncClient,
    database_url: str,
    redis_url: str,
    receiver: Receiver,
    sessions: Sessions,
) -> None:
    # One request at a time per endpoint and a lease of 4 timeouts: a share of 4 in flight. The
    # timeout is long enough that no attempt ends within the test, however busy the machine.
    settings = webhook_settings(database_url, redis_url, webhook_timeout_s=30.0, lease_s=120.0)
    clock = FakeClock()
    sender = WebhookSender(
        settings.webhook_timeout_s, allow_private=True, max_concurrent_per_endpoint=1
    )
    leases = LeaseKeeper(sessions, settings.lease_s, clock=clock)
    service = DeliveryService(settings, sessions, sender, cipher_for(settings), leases, clock=clock)
    pump = Pump(service, sessions, clock, settings)
    dead = _path()
    receiver.script(dead, default=Reply(hang=True))
    who = await new_client(settings, sessions)
    await _subscribe(api, who, receiver.url(dead))
    events = [await emit_event(sessions, who.id) for _ in range(6)]
    async with transaction(sessions) as session:
        # Earlier tests' deliveries (to receivers that may hang) must not share these batches.
        await session.execute(
            text(
                "UPDATE deliveries SET next_attempt_at = now() + interval '1 day'"
                " WHERE state = 'pending' AND client_id <> :c"
            ),
            {"c": who.id},
        )

    async def handed_back() -> list[datetime]:
        rows = [(await deliveries_of_event(sessions, e))[0] for e in events]
        return sorted(
            row["next_attempt_at"]
            for row in rows
            if row["lease_token"] is None and row["attempt_count"] == 0
        )

    async def both_handed_back() -> bool:
        return len(await handed_back()) >= 2

    def postponed_by(due: datetime, before: datetime, after: datetime) -> tuple[float, float]:
        """The least and the most a delivery handed back between `before` and `after` (by the
        fake clock) can have been postponed by, to come due at `due`: however busy the machine,
        the postponement chosen lies in between."""
        return (due - after).total_seconds(), (due - before).total_seconds()

    try:
        token, ids = await pump.claim()
        first_before = clock()
        await service.start_batch(ids, token)
        # The batch runs in the background.
        await wait_until_async(both_handed_back, timeout_s=5, interval_s=0.01, what="hand-backs")
        first_after = clock()
        # No answer yet, so nothing says the endpoint is slow: the short hand-back, POSTPONE_S.
        short = await handed_back()
        assert len(short) == 2
        for due in short:
            least, most = postponed_by(due, first_before, first_after)
            assert least - 0.01 <= POSTPONE_S <= most + 0.01, (least, most)
        clock.advance(1.0)
        second_before = clock()
        await pump.once()
        second_after = clock()
        # Its share (4 in flight, one at a time) needs 4 rounds, each as long as the endpoint has
        # gone without an answer since the batch began: at least the second the clock moved on.
        unanswered_least = (second_before - first_after).total_seconds()
        unanswered_most = (second_after - first_before).total_seconds()
        assert unanswered_least >= 1.0
        # (Never longer than a lease and a timeout, by which every attempt held has ended.)
        ceiling = settings.lease_s + settings.webhook_timeout_s
        longer = await handed_back()
        assert len(longer) == 2
        for due in longer:
            least, most = postponed_by(due, second_before, second_after)
            assert least - 0.01 <= min(ceiling, 4 * unanswered_most), (least, unanswered_most)
            assert most + 0.01 >= min(ceiling, 4 * unanswered_least), (most, unanswered_least)
    finally:
        await service.close()


async def test_redeliver_reads_the_deliveries_once_and_names_a_disabled_subscription(
    hook_settings: Settings, client: ApiClient, receiver: Receiver, sessions: Sessions
) -> None:
    app = create_app(hook_settings)
    reads: list[str] = []

    def count_reads(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM deliveries d JOIN subscriptions s" in statement:
            reads.append(statement)

    async with app.router.lifespan_context(app), asgi_client(app) as api:
        event.listen(app.state.resources.engine.sync_engine, "before_cursor_execute", count_reads)
        sub = await _subscribe(api, client, receiver.url(_path()))
        event_id = await emit_event(sessions, client.id)
        for body in ({}, {"subscription_id": sub["id"]}):
            reads.clear()
            response = await api.post(
                f"/v1/events/{event_id}/redeliver", json=body, headers=client.headers
            )
            assert response.status_code == 202
            assert [d["subscription_id"] for d in response.json()["data"]] == [sub["id"]]
            assert len(reads) == 1
        disabled = await api.patch(
            f"/v1/subscriptions/{sub['id']}", json={"enabled": False}, headers=client.headers
        )
        assert disabled.status_code == 200
        refused = await api.post(
            f"/v1/events/{event_id}/redeliver",
            json={"subscription_id": sub["id"]},
            headers=client.headers,
        )
        assert refused.status_code == 409
        assert "disabled or deleted" in refused.json()["detail"]
