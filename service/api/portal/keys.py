"""The key that seals portal sessions: derived from the same material as the webhook secrets'
key (PHONEBRIDGE_SECRET_KEY, or the key file under the data directory), with its own HKDF label,
so every API process of a deployment accepts the others' cookies and nothing else does."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.config import Settings
from service.domain.portal import SESSION_KEY_BYTES
from service.webhooks.encryption import load_or_create_key_file

_HKDF_INFO = b"phonebridge portal sessions v1"


def portal_session_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        material = settings.secret_key.get_secret_value().encode("utf-8")
    else:
        material = load_or_create_key_file(settings.data_dir)
    return HKDF(
        algorithm=hashes.SHA256(), length=SESSION_KEY_BYTES, salt=None, info=_HKDF_INFO
    ).derive(material)
