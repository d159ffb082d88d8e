"""Webhook secrets at rest: AES-GCM under a configured or generated key."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.config import ConfigError, build_settings
from service.domain.signing import new_secret
from service.webhooks.encryption import (
    KEY_FILE_NAME,
    SecretCipher,
    SecretDecryptionError,
    cipher_for,
    derive_key,
    load_or_create_key_file,
)

SECRET = new_secret(os.urandom(32))


def test_a_secret_round_trips_and_its_ciphertext_reveals_nothing() -> None:
    cipher = SecretCipher(derive_key(b"configured key material"))
    stored = cipher.encrypt(SECRET, "sub_a")
    assert cipher.decrypt(stored, "sub_a") == SECRET
    assert SECRET.encode() not in stored
    assert SECRET.removeprefix("whsec_").encode() not in stored
    assert cipher.encrypt(SECRET, "sub_a") != stored  # a fresh nonce each time


def test_a_ciphertext_only_opens_for_its_own_subscription() -> None:
    cipher = SecretCipher(derive_key(b"configured key material"))
    stored = cipher.encrypt(SECRET, "sub_a")
    with pytest.raises(SecretDecryptionError):
        cipher.decrypt(stored, "sub_b")


def test_another_key_cannot_decrypt_and_the_error_reveals_nothing() -> None:
    stored = SecretCipher(derive_key(b"key one")).encrypt(SECRET, "sub_a")
    with pytest.raises(SecretDecryptionError) as caught:
        SecretCipher(derive_key(b"key two")).decrypt(stored, "sub_a")
    assert SECRET not in str(caught.value)
    with pytest.raises(SecretDecryptionError):
        SecretCipher(derive_key(b"key one")).decrypt(b"\x00garbage", "sub_a")


def test_the_cipher_never_shows_its_key() -> None:
    assert "hidden" in repr(SecretCipher(derive_key(b"k")))


def test_the_configured_key_is_used_everywhere(tmp_path: Path) -> None:
    settings = build_settings(secret_key="a shared key for the whole fleet", data_dir=tmp_path)
    stored = cipher_for(settings).encrypt(SECRET, "sub_a")
    assert cipher_for(settings).decrypt(stored, "sub_a") == SECRET
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_a_too_short_configured_key_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PHONEBRIDGE_SECRET_KEY") as caught:
        cipher_for(build_settings(secret_key="short", data_dir=tmp_path))
    assert "short" not in str(caught.value)


def test_without_a_configured_key_one_is_generated_once_in_a_private_file(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    settings = build_settings(secret_key=None, data_dir=data_dir)
    stored = cipher_for(settings).encrypt(SECRET, "sub_a")
    key_file = data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Another process with the same data_dir reads the same key.
    assert cipher_for(settings).decrypt(stored, "sub_a") == SECRET
    assert [p.name for p in data_dir.iterdir()] == [KEY_FILE_NAME]


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_or_create_key_file(tmp_path), range(16)))
    assert len(set(keys)) == 1
    assert len(keys[0]) == 32
