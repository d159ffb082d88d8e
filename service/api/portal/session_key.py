"""The key that seals portal sessions: derived from the same material as the webhook secrets'
key (PHONEBRIDGE_SECRET_KEY, or the key file under the data directory), with its own HKDF label,
so every API process of a deployment accepts the others' cookies and nothing else does."""

from __future__ import annotations

from service.config import Settings
from service.domain.portal import SESSION_KEY_BYTES
from service.secret_key import deployment_key

_HKDF_INFO = b"phonebridge portal sessions v1"


def portal_session_key(settings: Settings) -> bytes:
    return deployment_key(settings, _HKDF_INFO, SESSION_KEY_BYTES)
