"""Full phone numbers kept for a later submit (a re-check; a check job's items), sealed at rest.

A submitted check's number is otherwise never stored (only its mask); a number that must be
submitted again later is kept only while that can still happen, and only like this: AES-256-GCM
under a key of its own derived from the deployment's secret (service/secret_key.py), stored as
`version || nonce || ciphertext+tag`. Each ciphertext is bound to what it belongs to (associated
data, e.g. the client and task), so a sealed number copied into another row does not open there.
A database dump alone reveals no number; neither does a log, since nothing here logs.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.config import Settings
from service.secret_key import deployment_key

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
_HKDF_INFO = b"phonebridge phone numbers at rest v1"


class SealedNumberError(Exception):
    """A sealed number does not open: the key changed or the row was tampered with."""


class NumberSeal:
    """Seals and opens phone numbers for the record they belong to."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "NumberSeal(<key hidden>)"

    def seal(self, phone_number: str, belongs_to: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, phone_number.encode("ascii"), belongs_to.encode())
        return FORMAT_VERSION + nonce + sealed

    def open(self, stored: bytes, belongs_to: str) -> str:
        if stored[:1] != FORMAT_VERSION or len(stored) <= 1 + NONCE_BYTES:
            raise SealedNumberError("a sealed phone number has an unknown format")
        nonce, sealed = stored[1 : 1 + NONCE_BYTES], stored[1 + NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, belongs_to.encode())
        except InvalidTag:
            raise SealedNumberError(
                "a sealed phone number does not open (was PHONEBRIDGE_SECRET_KEY changed?)"
            ) from None
        return plain.decode("ascii")


def number_seal_for(settings: Settings) -> NumberSeal:
    """The seal of this deployment's kept phone numbers."""
    return NumberSeal(deployment_key(settings, _HKDF_INFO))


def recheck_binding(client_id: int, task_id: str) -> str:
    """What a re-check's sealed number belongs to: the client's task (its first task_id)."""
    return f"recheck:{client_id}:{task_id}"


def job_item_binding(client_id: int, job_id: str, line: int) -> str:
    """What a check job item's sealed number belongs to: the client's job and the item's line."""
    return f"job_item:{client_id}:{job_id}:{line}"
