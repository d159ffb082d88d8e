"""Webhook secrets at rest: AES-256-GCM under a key derived from configuration.

A database dump alone must not reveal subscribers' signing secrets, so the columns hold
`version || nonce || ciphertext+tag`. The key is HKDF-SHA256 of PHONEBRIDGE_SECRET_KEY; when that
is unset (a laptop running `phonebridge up`), a random key is created once in
`PHONEBRIDGE_DATA_DIR/webhook-secrets.key` (mode 0600) and reused by every process that shares the
directory. A fleet of machines must set PHONEBRIDGE_SECRET_KEY to the same value everywhere.

Each ciphertext is bound to its subscription's public id (associated data), so a row's secret
copied into another row does not decrypt there.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.config import ConfigError, Settings

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
KEY_FILE_NAME = "webhook-secrets.key"
_HKDF_INFO = b"phonebridge webhook secrets at rest v1"


class SecretDecryptionError(Exception):
    """A stored secret does not decrypt: the key changed or the row was tampered with."""


def derive_key(material: bytes, label: bytes = _HKDF_INFO, length: int = 32) -> bytes:
    """A key for one purpose (`label`; by default the webhook secrets' 256-bit AES key) from
    configured key material of any length."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(material)


class SecretCipher:
    """Encrypts and decrypts webhook secrets for the subscription they belong to."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

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
        try:
            plain = self._aead.decrypt(nonce, sealed, subscription_id.encode())
        except InvalidTag:
            raise SecretDecryptionError(
                "stored webhook secret does not decrypt (was PHONEBRIDGE_SECRET_KEY changed?)"
            ) from None
        return plain.decode("utf-8")


def load_or_create_key_file(data_dir: Path) -> bytes:
    """The key material kept under `data_dir`, created (mode 0600) on first use.

    Creation is atomic (write a private temporary file, then hard-link it into place), so
    processes starting together agree on one key.
    """
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = data_dir / f".{KEY_FILE_NAME}.{secrets.token_hex(8)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(base64.b64encode(secrets.token_bytes(32)) + b"\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    material = base64.b64decode(path.read_bytes().strip())
    if len(material) < 32:
        raise ConfigError(f"the key file {path} is damaged; set PHONEBRIDGE_SECRET_KEY")
    return material


def key_material(settings: Settings) -> bytes:
    """The deployment's secret: PHONEBRIDGE_SECRET_KEY, or the key file under data_dir. Each use
    derives a key of its own from it (HKDF with its own label), so that every process of a
    deployment agrees and no key serves two purposes."""
    if settings.secret_key is not None:
        # Its length is checked with the other settings, when every process starts.
        return settings.secret_key.get_secret_value().encode("utf-8")
    return load_or_create_key_file(settings.data_dir)


def deployment_key(settings: Settings, label: bytes, length: int = 32) -> bytes:
    """A key for one purpose (`label`), derived from the deployment's secret."""
    return derive_key(key_material(settings), label, length)


def cipher_for(settings: Settings) -> SecretCipher:
    """The cipher of this deployment's webhook secrets."""
    return SecretCipher(deployment_key(settings, _HKDF_INFO))
