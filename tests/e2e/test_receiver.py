"""The demo's webhook receiver: it accepts what the subscription secret signed, and nothing else."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from service.run.receiver import ReceiverServer

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
BODY = b'{"type": "task.completed", "data": {"task_id": "T-1", "state": "completed", "result": {"phone_number": "0062****", "phone_status": "busy"}}}'  # noqa: E501


def signed_headers(secret: str, webhook_id: str, body: bytes) -> dict[str, str]:
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, now, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        server.state.add_secret(SECRET)
        yield server


def test_a_webhook_signed_with_the_secret_is_accepted_and_described(
    receiver: ReceiverServer,
) -> None:
    response = httpx.post(
        f"{receiver.base_url}/webhooks", content=BODY, headers=signed_headers(SECRET, "evt_1", BODY)
    )
    assert response.status_code == 204
    [received] = receiver.state.received()
    assert (received.webhook_id, received.verified, received.duplicate) == ("evt_1", True, False)
    assert (received.event_type, received.task_id, received.phone_status) == (
        "task.completed",
        "T-1",
        "busy",
    )


def test_a_job_items_event_and_a_job_completed_name_their_job(receiver: ReceiverServer) -> None:
    item = b'{"type": "task.completed", "data": {"task_id": "T-2", "job_id": "job_7"}}'
    job = b'{"type": "job.completed", "data": {"id": "job_7", "state": "completed"}}'
    for webhook_id, body in (("evt_item", item), ("evt_job", job), ("evt_task", BODY)):
        headers = signed_headers(SECRET, webhook_id, body)
        assert httpx.post(f"{receiver.base_url}/webhooks", content=body, headers=headers).is_success
    received = receiver.state.received()
    assert [(r.event_type, r.task_id, r.job_id) for r in received] == [
        ("task.completed", "T-2", "job_7"),
        ("job.completed", None, "job_7"),
        ("task.completed", "T-1", None),
    ]


def test_a_tampered_body_or_another_secret_is_refused(receiver: ReceiverServer) -> None:
    other_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    tampered = BODY.replace(b"busy", b"ring")
    attempts = [
        (tampered, signed_headers(SECRET, "evt_2", BODY)),
        (BODY, signed_headers(other_secret, "evt_3", BODY)),
    ]
    for body, headers in attempts:
        response = httpx.post(f"{receiver.base_url}/webhooks", content=body, headers=headers)
        assert response.status_code == 401
    assert [r.verified for r in receiver.state.received()] == [False, False]


def test_a_redelivered_webhook_is_marked_as_a_duplicate(receiver: ReceiverServer) -> None:
    for _ in range(2):
        headers = signed_headers(SECRET, "evt_4", BODY)
        httpx.post(f"{receiver.base_url}/webhooks", content=BODY, headers=headers)
    assert [r.duplicate for r in receiver.state.received()] == [False, True]
    listed = httpx.get(f"{receiver.base_url}/received").json()["received"]
    assert [item["webhook_id"] for item in listed] == ["evt_4", "evt_4"]


def test_secrets_are_added_over_http_and_malformed_ones_refused(receiver: ReceiverServer) -> None:
    assert httpx.post(f"{receiver.base_url}/secrets", json={"secret": "nope"}).status_code == 422
    other_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    assert (
        httpx.post(f"{receiver.base_url}/secrets", json={"secret": other_secret}).status_code == 204
    )
    headers = signed_headers(other_secret, "evt_5", BODY)
    assert httpx.post(f"{receiver.base_url}/w", content=BODY, headers=headers).status_code == 204
