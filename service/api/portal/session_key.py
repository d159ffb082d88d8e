"""The key that seals portal sessions: derived from the same material as the webhook secrets'
key (PHONEBRIDGE_SECRET_KEY, or the key file under the data directory), with its own HKDF label,
so every API process of a deployment accepts the others' cookies and nothing else does. During a
rotation (PHONEBRIDGE_SECRET_KEY_PREVIOUS) sessions are sealed under the current key and the
previous keys still open theirs, so nobody is signed out by it."""

from __future__ import annotations

from service.config import Settings
from service.domain.portal import SESSION_KEY_BYTES
from service.secret_key import deployment_key, deployment_keys

_HKDF_INFO = b"phonebridge portal sessions v1"


def portal_session_key(settings: Settings) -> bytes:
    return deployment_key(settings, _HKDF_INFO, SESSION_KEY_BYTES)


def portal_session_keys(settings: Settings) -> tuple[bytes, ...]:
    """The session key under every secret still read, the current one (`portal_session_key`)
    first."""
    return deployment_keys(settings, _HKDF_INFO, SESSION_KEY_BYTES)
