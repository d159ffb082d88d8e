"""The deployment's secret and the keys derived from it, one per purpose.

PHONEBRIDGE_SECRET_KEY, or, when it is unset (a laptop running `phonebridge up`), a random key
created once in `PHONEBRIDGE_DATA_DIR/webhook-secrets.key` (mode 0600) and reused by every process
that shares the directory. A fleet of machines must set PHONEBRIDGE_SECRET_KEY to the same value
everywhere. Each use derives a key of its own (HKDF-SHA256 with its own label): the webhook
secrets at rest (service/webhooks/encryption.py), the callback tokens, the portal's sessions and
the phone numbers kept for later submits (service/sealed_numbers.py). No key serves two purposes.

Rotation: PHONEBRIDGE_SECRET_KEY_PREVIOUS lists older secrets (comma-separated) that are still
read, never written. `deployment_keys` answers a purpose's key under every secret, the current one
first: what is written (a seal, a session, a digest kept for later) uses the first; what is read
(opening, verifying, matching a digest) tries each. docs/operations.md says how to rotate.

Below every package that needs a key, so the engine and webhook delivery can both use it without
meeting.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.config import ConfigError, Settings

KEY_FILE_NAME = "webhook-secrets.key"


def derive_key(material: bytes, label: bytes, length: int = 32) -> bytes:
    """A key for one purpose (`label`) from configured key material of any length."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(material)


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
    """The deployment's secret: PHONEBRIDGE_SECRET_KEY, or the key file under data_dir."""
    if settings.secret_key is not None:
        # Its length is checked with the other settings, when every process starts.
        return settings.secret_key.get_secret_value().encode("utf-8")
    return load_or_create_key_file(settings.data_dir)


def deployment_key(settings: Settings, label: bytes, length: int = 32) -> bytes:
    """A key for one purpose (`label`), derived from the deployment's current secret: the key
    that writes."""
    return derive_key(key_material(settings), label, length)


def key_materials(settings: Settings) -> tuple[bytes, ...]:
    """Every secret still read: the current one, then PHONEBRIDGE_SECRET_KEY_PREVIOUS in its
    order (the settings refuse previous keys without a current PHONEBRIDGE_SECRET_KEY)."""
    previous = tuple(key.get_secret_value().encode("utf-8") for key in settings.secret_key_previous)
    return (key_material(settings), *previous)


def deployment_keys(settings: Settings, label: bytes, length: int = 32) -> tuple[bytes, ...]:
    """The key for one purpose (`label`) under every secret still read, the current one first:
    write with the first, read (open, verify, match) with any."""
    return tuple(derive_key(material, label, length) for material in key_materials(settings))
