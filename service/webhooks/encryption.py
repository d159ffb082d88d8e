"""Webhook secrets at rest: AES-256-GCM under a key derived from configuration.

A database dump alone must not reveal subscribers' signing secrets, so the columns hold
`version || nonce || ciphertext+tag`. The key is HKDF-SHA256 of the deployment's secret
(PHONEBRIDGE_SECRET_KEY or the key file: service/secret_key.py) with a label of its own.

Each ciphertext is bound to its subscription's public id (associated data), so a row's secret
copied into another row does not decrypt there. A rotated secret (PHONEBRIDGE_SECRET_KEY_PREVIOUS)
keeps the secrets it encrypted readable: new ones are encrypted under the current key, stored
ones decrypt under whichever listed key encrypted them (`phonebridge secret-key reseal` moves
them all to the current key, after which the old key can go).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service import secret_key
from service.config import Settings
from service.secret_key import KEY_FILE_NAME, deployment_keys, load_or_create_key_file

# The key file's name and loader are the deployment secret's (service/secret_key.py), named here
# too for the tests of secrets at rest.
__all__ = [
    "KEY_FILE_NAME",
    "SecretCipher",
    "SecretDecryptionError",
    "cipher_for",
    "derive_key",
    "load_or_create_key_file",
]

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
_HKDF_INFO = b"phonebridge webhook secrets at rest v1"


class SecretDecryptionError(Exception):
    """A stored secret does not decrypt: the key changed or the row was tampered with."""


def derive_key(material: bytes, label: bytes = _HKDF_INFO, length: int = 32) -> bytes:
    """A key for one purpose (`label`; by default the webhook secrets' 256-bit AES key) from
    configured key material of any length."""
    return secret_key.derive_key(material, label, length)


class SecretCipher:
    """Encrypts webhook secrets under `key` and decrypts them under it or any of `previous`
    keys, for the subscription they belong to."""

    def __init__(self, key: bytes, *previous: bytes) -> None:
        self._aead = AESGCM(key)
        self._readers = (self._aead, *(AESGCM(old) for old in previous))

    def __repr__(self) -> str:
        return "SecretCipher(<key hidden>)"

    def encrypt(self, secret: str, subscription_id: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode("utf-8"), subscription_id.encode())
        return FORMAT_VERSION + nonce + sealed

    def decrypt(self, stored: bytes, subscription_id: str) -> str:
        if stored[:1] != FORMAT_VERSION or len(stored) <= 1 + NONCE_BYTES:
            raise SecretDecryptionError("stored webhook secret has an unknown format")
        nonce, sealed = stored[1 : 1 + NONCE_BYTES], stored[1 + NONCE_BYTES :]
        for aead in self._readers:
            try:
                plain = aead.decrypt(nonce, sealed, subscription_id.encode())
            except InvalidTag:
                continue
            return plain.decode("utf-8")
        raise SecretDecryptionError(
            "stored webhook secret decrypts under no key still listed (was "
            "PHONEBRIDGE_SECRET_KEY changed without its old value in "
            "PHONEBRIDGE_SECRET_KEY_PREVIOUS?)"
        )

    def is_current(self, stored: bytes, subscription_id: str) -> bool:
        """Whether `stored` decrypts under the current key (nothing to reseal)."""
        try:
            self._aead.decrypt(
                stored[1 : 1 + NONCE_BYTES], stored[1 + NONCE_BYTES :], subscription_id.encode()
            )
        except InvalidTag:
            return False
        return True


def cipher_for(settings: Settings) -> SecretCipher:
    """The cipher of this deployment's webhook secrets."""
    return SecretCipher(*deployment_keys(settings, _HKDF_INFO))
