"""The portal's pure parts: sealed session cookies, CSRF tokens, and the arithmetic of its charts.

A session is sealed with AES-256-GCM (not only signed): it carries the SHA-256 digest of the API
key it was opened with, so that every page checks that key exactly as the REST API would
(revoking the key ends its sessions), and the digest should not be readable in the browser.
A CSRF token is an HMAC of the session's random id, so it is valid for that session alone.

How to extend: a new claim is a field of SessionClaims and a key of its JSON; old cookies without
it fail to open and their people simply sign in again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_KEY_BYTES = 32
SESSION_ID_BYTES = 16
NONCE_BYTES = 12
_AAD = b"phonebridge portal session v1"
_CSRF_LABEL = b"phonebridge portal csrf v1:"
# A cookie longer than this is not one of ours (browsers cap a cookie near 4 KiB anyway).
MAX_TOKEN_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """Who a portal session belongs to and until when (unix seconds)."""

    client_id: int
    key_digest: bytes
    session_id: str
    expires_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal_session(key: bytes, claims: SessionClaims, nonce: bytes) -> str:
    """The cookie value for `claims`: url-safe base64 of nonce || AES-GCM(claims JSON)."""
    payload = json.dumps(
        {
            "c": claims.client_id,
            "k": _b64(claims.key_digest),
            "s": claims.session_id,
            "e": claims.expires_at,
        },
        separators=(",", ":"),
    ).encode()
    return _b64(nonce + AESGCM(key).encrypt(nonce, payload, _AAD))


def open_session(key: bytes, token: str, now: float) -> SessionClaims | None:
    """The claims of a cookie sealed with `key` and not expired at `now`; None for anything
    else (tampered, another deployment's, malformed, expired)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        sealed = _unb64(token)
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        claims = json.loads(AESGCM(key).decrypt(nonce, ciphertext, _AAD))
        opened = SessionClaims(
            client_id=int(claims["c"]),
            key_digest=_unb64(str(claims["k"])),
            session_id=str(claims["s"]),
            expires_at=int(claims["e"]),
        )
    except (InvalidTag, ValueError, KeyError, TypeError, binascii.Error):
        return None
    if opened.expires_at <= now:
        return None
    return opened


def open_session_under_any(keys: Sequence[bytes], token: str, now: float) -> SessionClaims | None:
    """`open_session` under each of `keys` in turn (the current key, then the previous ones of a
    rotation): the claims of the first that opens the cookie, or None."""
    for key in keys:
        if (claims := open_session(key, token, now)) is not None:
            return claims
    return None


def csrf_token(key: bytes, session_id: str) -> str:
    """The CSRF token of the forms of one session (or of one sign-in form's nonce)."""
    return _b64(hmac.new(key, _CSRF_LABEL + session_id.encode(), hashlib.sha256).digest())


def sign_in_nonce(issued_at: float, random_hex: str) -> str:
    """A sign-in form's nonce: when it was issued (whole seconds), then random. It is bound into
    the form's CSRF token, so its time cannot be changed without the token failing."""
    return f"{int(issued_at)}.{random_hex}"


def sign_in_nonce_is_fresh(nonce: str, now: float, lifetime_s: float) -> bool:
    """Whether a sign-in nonce was issued within `lifetime_s` before `now` (its time is in whole
    seconds, so it may be up to a second older than it says; and not in the future, allowing a
    second of clock difference between API processes)."""
    issued, dot, rest = nonce.partition(".")
    if not (dot and rest and issued.isascii() and issued.isdigit()):
        return False
    return now - lifetime_s <= int(issued) + 1 and int(issued) <= now + 1


def csrf_matches(key: bytes, session_id: str, presented: str | None) -> bool:
    """Whether a form's token is this session's, compared in constant time."""
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(key, session_id), presented)


def csrf_matches_any(keys: Sequence[bytes], session_id: str, presented: str | None) -> bool:
    """`csrf_matches` under any of `keys` (a form rendered before a rotation still posts)."""
    return any(csrf_matches(key, session_id, presented) for key in keys)


@dataclass(frozen=True, slots=True)
class Bar:
    """One rectangle of a stacked bar chart, in the chart's own pixel coordinates."""

    x: float
    y: float
    width: float
    height: float
    series: str
    value: int
    label: str


def stacked_bars(
    buckets: Sequence[tuple[str, dict[str, int]]],
    series: Sequence[str],
    *,
    width: float,
    height: float,
    gap: float = 2.0,
) -> tuple[list[Bar], int]:
    """Lay out one stacked bar per bucket (label, counts by series), tallest bar at full
    `height`; returns the rectangles (zero counts drawn as none) and the scale's maximum."""
    top = max((sum(counts.get(name, 0) for name in series) for _, counts in buckets), default=0)
    scale = max(top, 1)
    slot = width / max(len(buckets), 1)
    bars: list[Bar] = []
    for index, (label, counts) in enumerate(buckets):
        base = height
        for name in series:
            value = counts.get(name, 0)
            if value <= 0:
                continue
            bar_height = height * value / scale
            base -= bar_height
            bars.append(
                Bar(
                    index * slot + gap / 2,
                    base,
                    max(slot - gap, 1.0),
                    bar_height,
                    name,
                    value,
                    label,
                )
            )
    return bars, top
