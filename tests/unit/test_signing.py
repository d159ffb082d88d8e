"""Standard Webhooks signing, checked with the `standardwebhooks` package, not only our own code."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.domain.signing import (
    InvalidSecret,
    new_secret,
    rfc3339,
    secret_key,
    sign,
    verify_signature,
    webhook_body,
    webhook_headers,
)

TASK = {
    "task_id": "T-123",
    "state": "completed",
    "result": {"phone_number": "0062********", "phone_status": "ring"},
    "metadata": {"order": "ñ-42"},
}
CREATED_AT = datetime(2026, 11, 26, 18, 1, 28, 272745, tzinfo=UTC)


def _secret() -> str:
    return new_secret(os.urandom(32))


def _now_ts() -> int:
    return int(time.time())


def test_new_secret_is_whsec_and_base64_of_the_random_bytes() -> None:
    raw = bytes(range(32))
    secret = new_secret(raw)
    assert secret.startswith("whsec_")
    assert base64.b64decode(secret.removeprefix("whsec_")) == raw
    assert secret_key(secret) == raw


def test_new_secret_refuses_fewer_than_24_bytes() -> None:
    with pytest.raises(InvalidSecret):
        new_secret(os.urandom(23))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "whsec_",
        "sk_" + base64.b64encode(os.urandom(32)).decode(),
        "whsec_!!!notbase64!!!",
        "whsec_" + base64.b64encode(os.urandom(8)).decode(),
    ],
    ids=["empty", "whsec_-empty", "other-prefix", "not-base64", "8-bytes"],
)
def test_secret_key_refuses_unusable_secrets_without_echoing_them(bad: str) -> None:
    with pytest.raises(InvalidSecret) as caught:
        secret_key(bad)
    if bad.removeprefix("whsec_"):
        assert bad.removeprefix("whsec_") not in str(caught.value)


def test_body_is_type_timestamp_and_data_with_rfc3339_utc_timestamp() -> None:
    body = webhook_body("task.completed", CREATED_AT, TASK)
    assert json.loads(body) == {
        "type": "task.completed",
        "timestamp": "2026-11-26T18:01:28.272745Z",
        "data": TASK,
    }


def test_rfc3339_converts_other_offsets_to_utc_and_refuses_naive_times() -> None:
    plus_two = datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(plus_two) == "2026-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="timezone"):
        rfc3339(datetime(2026, 1, 1))


def test_signature_verifies_with_the_standardwebhooks_package() -> None:
    secret = _secret()
    body = webhook_body("task.completed", CREATED_AT, TASK)
    headers = webhook_headers([secret], "evt_abc", _now_ts(), body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "evt_abc"
    assert headers["webhook-signature"].startswith("v1,")


def test_another_secret_does_not_verify() -> None:
    body = webhook_body("task.completed", CREATED_AT, TASK)
    headers = webhook_headers([_secret()], "evt_abc", _now_ts(), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(_secret()).verify(body, headers)


@pytest.mark.parametrize("field", ["webhook-id", "webhook-timestamp", "body"])
def test_changing_the_id_the_timestamp_or_one_body_byte_breaks_the_signature(field: str) -> None:
    secret = _secret()
    body = webhook_body("task.completed", CREATED_AT, TASK)
    headers = webhook_headers([secret], "evt_abc", _now_ts(), body)
    if field == "body":
        body = body.replace(b"ring", b"busy")
    elif field == "webhook-id":
        headers[field] = "evt_abd"
    else:
        headers[field] = str(int(headers[field]) - 1)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_during_rotation_two_signatures_each_verify_with_their_own_secret() -> None:
    new, old = _secret(), _secret()
    body = webhook_body("task.expired", CREATED_AT, TASK)
    headers = webhook_headers([new, old], "evt_rot", _now_ts(), body)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(_secret()).verify(body, headers)


def test_sign_needs_at_least_one_secret() -> None:
    with pytest.raises(InvalidSecret):
        sign([], "evt_x", 1, b"{}")


def test_verify_signature_accepts_what_standardwebhooks_accepts() -> None:
    secret = _secret()
    body = webhook_body("task.failed", CREATED_AT, TASK)
    now = datetime.now(UTC)
    headers = webhook_headers([secret], "evt_v", int(now.timestamp()), body)
    Webhook(secret).verify(body, headers)
    assert verify_signature(secret, headers, body, now)
    assert not verify_signature(_secret(), headers, body, now)
    assert not verify_signature(secret, headers, body + b" ", now)
    assert not verify_signature(secret, headers, body, now + timedelta(minutes=6))
    assert not verify_signature(secret, {**headers, "webhook-timestamp": "soon"}, body, now)
    assert not verify_signature(secret, {"webhook-id": "evt_v"}, body, now)


def test_verify_signature_finds_the_matching_one_among_several() -> None:
    old, new = _secret(), _secret()
    body = b'{"type":"task.completed"}'
    now = datetime.now(UTC)
    headers = webhook_headers([new, old], "evt_v", int(now.timestamp()), body)
    assert verify_signature(old, headers, body, now)
    assert verify_signature(new, headers, body, now)


@given(
    key=st.binary(min_size=24, max_size=64),
    message_id=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="."),
        min_size=1,
        max_size=40,
    ),
    data=st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=5),
)
def test_any_secret_id_and_payload_verify_with_standardwebhooks(
    key: bytes, message_id: str, data: dict[str, str]
) -> None:
    secret = new_secret(key)
    body = webhook_body("task.completed", CREATED_AT, data)
    headers = webhook_headers([secret], message_id, _now_ts(), body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
