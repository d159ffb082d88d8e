"""Full phone numbers kept for a later submit (a re-check; a check job's items), sealed at rest.

A submitted check's number is otherwise never stored (only its mask); a number that must be
submitted again later is kept only while that can still happen, and only like this: AES-256-GCM
under a key of its own derived from the deployment's secret (service/secret_key.py), stored as
`version || nonce || ciphertext+tag`. Each ciphertext is bound to what it belongs to (associated
data, e.g. the client and task), so a sealed number copied into another row does not open there.
A database dump alone reveals no number; neither does a log, since nothing here logs.

A rotated secret (PHONEBRIDGE_SECRET_KEY_PREVIOUS) keeps what it sealed readable: a number is
sealed under the current key and opened under whichever listed key sealed it.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.config import Settings
from service.secret_key import deployment_keys

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
_HKDF_INFO = b"phonebridge phone numbers at rest v1"


class SealedNumberError(Exception):
    """A sealed number does not open: the key changed or the row was tampered with."""


class NumberSeal:
    """Seals phone numbers under `key` and opens them under it or any of `previous` keys, for
    the record they belong to."""

    def __init__(self, key: bytes, *previous: bytes) -> None:
        self._aead = AESGCM(key)
        self._readers = (self._aead, *(AESGCM(old) for old in previous))

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
        for aead in self._readers:
            try:
                plain = aead.decrypt(nonce, sealed, belongs_to.encode())
            except InvalidTag:
                continue
            return plain.decode("ascii")
        raise SealedNumberError(
            "a sealed phone number opens under no key still listed (was PHONEBRIDGE_SECRET_KEY "
            "changed without its old value in PHONEBRIDGE_SECRET_KEY_PREVIOUS?)"
        )

    def is_current(self, stored: bytes, belongs_to: str) -> bool:
        """Whether `stored` opens under the current key (nothing to reseal)."""
        nonce, sealed = stored[1 : 1 + NONCE_BYTES], stored[1 + NONCE_BYTES :]
        try:
            self._aead.decrypt(nonce, sealed, belongs_to.encode())
        except InvalidTag:
            return False
        return True


def number_seal_for(settings: Settings) -> NumberSeal:
    """The seal of this deployment's kept phone numbers."""
    return NumberSeal(*deployment_keys(settings, _HKDF_INFO))


def recheck_binding(client_id: int, task_id: str) -> str:
    """What a re-check's sealed number belongs to: the client's task (its first task_id)."""
    return f"recheck:{client_id}:{task_id}"


def job_item_binding(client_id: int, job_id: str, line: int) -> str:
    """What a check job item's sealed number belongs to: the client's job and the item's line."""
    return f"job_item:{client_id}:{job_id}:{line}"
