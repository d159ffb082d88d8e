"""The portal's test event: signed like any webhook, logged with the attempt lines of real
deliveries (marked as a test), kept as the subscription's last test and shown in its row, and
never an event of the feed."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook

from tests.support.api import bearer
from tests.support.factories import new_key
from tests.support.portal import page_csrf
from tests.support.receivers import Receiver, Reply

ATTEMPT_LINES = {"webhook.delivered", "webhook.attempt_failed", "webhook.delivery_failed"}


async def subscribe(api: httpx.AsyncClient, key: str, url: str) -> tuple[str, str]:
    created = await api.post("/v1/subscriptions", json={"url": url}, headers=bearer(key))
    assert created.status_code == 201, created.text
    body = created.json()
    return body["id"], body["secret"]


async def send_test(person: httpx.AsyncClient, subscription_id: str) -> httpx.Response:
    csrf = await page_csrf(person, "/portal/subscriptions")
    return await person.post(f"/portal/subscriptions/{subscription_id}/test", data={"csrf": csrf})


def row_of(html: str, subscription_id: str) -> str:
    match = re.search(rf'<tr class="subscription" id="{subscription_id}".*?</tr>', html, re.S)
    assert match is not None, f"no row for {subscription_id}"
    return match.group(0)


def attempt_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() in ATTEMPT_LINES]


async def test_a_delivered_test_event_is_signed_logged_and_shown_in_its_row(
    person: httpx.AsyncClient,
    api: httpx.AsyncClient,
    key: str,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    subscription_id, secret = await subscribe(api, key, receiver.url("/ok"))

    response = await send_test(person, subscription_id)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/portal/subscriptions?notice=tested")
    [request] = receiver.received("/ok")
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"] == {
        "test": True,
        "subscription_id": subscription_id,
        "message": "a test from the portal",
    }
    webhook_id = request.headers["webhook-id"]
    assert webhook_id.startswith("msg_test_")

    [line] = attempt_records(caplog)
    assert line.getMessage() == "webhook.delivered"
    assert line.__dict__["test"] is True
    assert line.__dict__["status"] == 200
    assert line.__dict__["webhook_id"] == webhook_id
    assert line.__dict__["subscription_id"] == subscription_id
    assert isinstance(line.__dict__["latency_ms"], int)

    page = await person.get(response.headers["location"])
    row = row_of(page.text, subscription_id)
    assert "HTTP 200" in row
    assert webhook_id in row
    assert 'class="last-test ok"' in row
    assert "Test event sent" in page.text


async def test_a_failed_test_event_logs_the_attempt_failed_line_and_shows_its_error(
    person: httpx.AsyncClient,
    api: httpx.AsyncClient,
    key: str,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    receiver.script("/down", default=Reply(status=500))
    subscription_id, _ = await subscribe(api, key, receiver.url("/down"))

    await send_test(person, subscription_id)

    [line] = attempt_records(caplog)
    assert line.getMessage() == "webhook.attempt_failed"
    assert line.__dict__["test"] is True
    assert line.__dict__["status"] == 500
    assert line.__dict__["error"] == "HTTP 500"
    assert "retry_in_s" not in line.__dict__  # a test is sent once
    assert len(receiver.received("/down")) == 1
    row = row_of((await person.get("/portal/subscriptions")).text, subscription_id)
    assert "HTTP 500" in row
    assert 'class="last-test bad"' in row


async def test_a_test_event_without_an_answer_shows_why(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str
) -> None:
    subscription_id, _ = await subscribe(api, key, "http://127.0.0.1:9/nobody")

    await send_test(person, subscription_id)

    row = row_of((await person.get("/portal/subscriptions")).text, subscription_id)
    assert "no answer" in row
    assert 'class="last-test bad"' in row


async def test_a_410_to_a_test_event_disables_nothing(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    receiver.script("/gone", default=Reply(status=410))
    subscription_id, _ = await subscribe(api, key, receiver.url("/gone"))

    await send_test(person, subscription_id)

    read = await api.get(f"/v1/subscriptions/{subscription_id}", headers=bearer(key))
    assert read.json()["enabled"] is True
    row = row_of((await person.get("/portal/subscriptions")).text, subscription_id)
    assert "disables nothing" in row


async def test_the_next_test_replaces_the_last_one(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    receiver.script("/flaky", Reply(status=503), default=Reply(status=204))
    subscription_id, _ = await subscribe(api, key, receiver.url("/flaky"))

    await send_test(person, subscription_id)
    first = row_of((await person.get("/portal/subscriptions")).text, subscription_id)
    await send_test(person, subscription_id)
    second = row_of((await person.get("/portal/subscriptions")).text, subscription_id)

    assert "HTTP 503" in first
    assert "HTTP 204" in second
    assert "HTTP 503" not in second


async def test_a_test_event_is_no_event_of_the_feed(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    subscription_id, _ = await subscribe(api, key, receiver.url("/feed"))

    await send_test(person, subscription_id)

    feed = await api.get("/v1/events", headers=bearer(key))
    assert feed.json()["data"] == []
    assert len(receiver.received("/feed")) == 1


async def test_untested_subscriptions_say_so(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    subscription_id, _ = await subscribe(api, key, receiver.url("/quiet"))
    row = row_of((await person.get("/portal/subscriptions")).text, subscription_id)
    assert "never sent" in row


async def test_a_test_event_needs_the_csrf_token(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, receiver: Receiver
) -> None:
    subscription_id, _ = await subscribe(api, key, receiver.url("/csrf"))
    response = await person.post(
        f"/portal/subscriptions/{subscription_id}/test", data={"csrf": "forged"}
    )
    assert response.status_code == 403
    assert receiver.received("/csrf") == []


async def test_another_clients_subscription_cannot_be_tested_or_seen(
    person: httpx.AsyncClient, api: httpx.AsyncClient, portal_app: FastAPI, receiver: Receiver
) -> None:
    other = await new_key(portal_app.state.settings)
    subscription_id, _ = await subscribe(api, other, receiver.url("/others"))

    response = await send_test(person, subscription_id)

    assert response.status_code == 404
    assert receiver.received("/others") == []
    assert subscription_id not in (await person.get("/portal/subscriptions")).text
