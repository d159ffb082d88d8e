"""Standard Webhooks: secrets, the request body, and its signature.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}` where body is the exact bytes sent,
and the key is the base64-decoded part of the secret after `whsec_`. During a rotation the header
carries one `v1,` signature per live secret, space separated, so a receiver holding either secret
accepts the message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from service.domain.jsontext import json_bytes

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32
# Standard Webhooks asks for at least 24 bytes (192 bits) of key material.
MIN_SECRET_BYTES = 24
SIGNATURE_VERSION = "v1"
# How far a receiver's clock may drift from ours before `verify_signature` rejects a message.
DEFAULT_TOLERANCE_S = 300


class InvalidSecret(ValueError):
    """A string that is not a usable `whsec_` secret. The message never echoes the value."""


def new_secret(random_bytes: bytes) -> str:
    """A `whsec_` secret made from the given random bytes (at least 24 of them)."""
    if len(random_bytes) < MIN_SECRET_BYTES:
        raise InvalidSecret(f"a webhook secret needs at least {MIN_SECRET_BYTES} random bytes")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("a webhook secret is whsec_ followed by base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise InvalidSecret(f"a webhook secret holds at least {MIN_SECRET_BYTES} bytes")
    return key


def rfc3339(moment: datetime) -> str:
    """A timestamp as the API shows it: UTC, with a `Z` suffix."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must carry a timezone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def webhook_body(
    event_type: str, created_at: datetime, data: Mapping[str, Any] | orjson.Fragment
) -> bytes:
    """The exact bytes of a webhook body: `{"type", "timestamp", "data"}`. `data` may be JSON
    text already (an `orjson.Fragment`), as stored, so it is not parsed only to be re-encoded."""
    return json_bytes({"type": event_type, "timestamp": rfc3339(created_at), "data": data})


def _signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: one `v1,` signature per secret, space separated."""
    if not secrets:
        raise InvalidSecret("at least one secret is needed to sign")
    return " ".join(_signature(secret_key(s), message_id, timestamp, body) for s in secrets)


def webhook_headers(
    secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (the timestamp is that attempt's)."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, message_id, timestamp, body),
    }


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> bool:
    """True when one of the header's `v1` signatures was made with `secret` over this body and
    the timestamp is within `tolerance_s` of `now` (what a receiver checks)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("webhook-id")
    timestamp_text = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (message_id and timestamp_text and signatures):
        return False
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        return False
    if abs(now.timestamp() - timestamp) > tolerance_s:
        return False
    expected = _signature(secret_key(secret), message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures.split(" "))
