"""Rotating PHONEBRIDGE_SECRET_KEY (service/secret_key.py): with the old secret listed in
PHONEBRIDGE_SECRET_KEY_PREVIOUS, what the old secret sealed, signed or digested is still read, and
everything new is written under the new secret; a secret no longer listed fails cleanly and no
error names a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.api.portal.session_key import portal_session_key, portal_session_keys
from service.config import ConfigError, Settings, build_settings
from service.domain.portal import (
    SessionClaims,
    csrf_matches_any,
    csrf_token,
    open_session_under_any,
    seal_session,
)
from service.sealed_numbers import SealedNumberError, number_seal_for, recheck_binding
from service.secret_key import deployment_key, deployment_keys, key_materials
from service.webhooks.encryption import SecretDecryptionError, cipher_for

OLD = "the-old-secret-key-of-this-deployment"
OLDER = "an-even-older-secret-key-of-this-deployment"
NEW = "the-new-secret-key-of-this-deployment"
STRANGER = "a-secret-key-nobody-listed-anywhere"
LABEL = b"a test purpose"
NUMBER = "525512341234"
BINDING = recheck_binding(7, "T-1")
NOW = 1_800_000_000.0


def before(tmp_path: Path) -> Settings:
    return build_settings(secret_key=OLD, data_dir=tmp_path)


def after(tmp_path: Path) -> Settings:
    """The same deployment once rotated: the new secret, the old one kept for reading."""
    return build_settings(secret_key=NEW, secret_key_previous=f"{OLD},{OLDER}", data_dir=tmp_path)


def claims() -> SessionClaims:
    return SessionClaims(
        client_id=3, key_digest=b"d" * 32, session_id="s" * 32, expires_at=int(NOW) + 600
    )


def assert_no_key_in(text: str) -> None:
    for key in (OLD, OLDER, NEW, STRANGER):
        assert key not in text


# --- the settings --------------------------------------------------------------------------------


def test_previous_keys_are_read_comma_separated_in_order_without_duplicates(
    tmp_path: Path,
) -> None:
    settings = build_settings(
        secret_key=NEW, secret_key_previous=f" {OLD} , {OLDER},{OLD}", data_dir=tmp_path
    )

    assert [key.get_secret_value() for key in settings.secret_key_previous] == [OLD, OLDER]
    assert key_materials(settings) == (NEW.encode(), OLD.encode(), OLDER.encode())


@pytest.mark.parametrize(
    ("previous", "said"),
    [
        (f"{OLD},short-one", "key 2 is shorter than 16 characters"),
        (f"{OLD},,{OLDER}", "expected comma-separated keys"),
        (f"{OLD},", "expected comma-separated keys"),
    ],
)
def test_a_bad_previous_key_stops_the_process_without_showing_any_key(
    tmp_path: Path, previous: str, said: str
) -> None:
    with pytest.raises(ConfigError, match=said) as raised:
        build_settings(secret_key=NEW, secret_key_previous=previous, data_dir=tmp_path)

    assert "PHONEBRIDGE_SECRET_KEY_PREVIOUS" in str(raised.value)
    assert_no_key_in(str(raised.value))
    assert "short-one" not in str(raised.value)


def test_an_empty_list_of_previous_keys_is_none(tmp_path: Path) -> None:
    settings = build_settings(secret_key=NEW, secret_key_previous=" ", data_dir=tmp_path)

    assert key_materials(settings) == (NEW.encode(),)


def test_previous_keys_without_a_current_key_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PHONEBRIDGE_SECRET_KEY is not") as raised:
        build_settings(secret_key_previous=OLD, data_dir=tmp_path)

    assert_no_key_in(str(raised.value))


def test_the_keys_of_a_purpose_are_the_current_secrets_first(tmp_path: Path) -> None:
    keys = deployment_keys(after(tmp_path), LABEL)

    assert keys[0] == deployment_key(after(tmp_path), LABEL)
    assert keys[1] == deployment_key(before(tmp_path), LABEL)
    assert len(set(keys)) == 3
    # Without a rotation there is the one key.
    assert deployment_keys(before(tmp_path), LABEL) == (deployment_key(before(tmp_path), LABEL),)


# --- sealed numbers ------------------------------------------------------------------------------


def test_a_number_sealed_under_the_old_key_opens_after_the_rotation(tmp_path: Path) -> None:
    sealed = number_seal_for(before(tmp_path)).seal(NUMBER, BINDING)

    assert number_seal_for(after(tmp_path)).open(sealed, BINDING) == NUMBER


def test_numbers_sealed_after_the_rotation_use_the_new_key(tmp_path: Path) -> None:
    sealed = number_seal_for(after(tmp_path)).seal(NUMBER, BINDING)

    assert number_seal_for(build_settings(secret_key=NEW)).open(sealed, BINDING) == NUMBER
    with pytest.raises(SealedNumberError):
        number_seal_for(before(tmp_path)).open(sealed, BINDING)


def test_a_number_sealed_under_a_key_not_listed_fails_without_naming_a_key(
    tmp_path: Path,
) -> None:
    sealed = number_seal_for(build_settings(secret_key=STRANGER)).seal(NUMBER, BINDING)

    with pytest.raises(SealedNumberError, match="PHONEBRIDGE_SECRET_KEY_PREVIOUS") as raised:
        number_seal_for(after(tmp_path)).open(sealed, BINDING)
    assert_no_key_in(str(raised.value))
    assert NUMBER not in str(raised.value)


# --- webhook secrets at rest ---------------------------------------------------------------------


def test_a_webhook_secret_encrypted_under_the_old_key_decrypts_after_the_rotation(
    tmp_path: Path,
) -> None:
    stored = cipher_for(before(tmp_path)).encrypt("whsec_abc", "sub_a")
    rotated = cipher_for(after(tmp_path))

    assert rotated.decrypt(stored, "sub_a") == "whsec_abc"
    assert not rotated.is_current(stored, "sub_a")
    assert rotated.is_current(rotated.encrypt("whsec_abc", "sub_a"), "sub_a")


def test_a_webhook_secret_under_a_key_not_listed_fails_without_naming_a_key(
    tmp_path: Path,
) -> None:
    stored = cipher_for(build_settings(secret_key=STRANGER)).encrypt("whsec_abc", "sub_a")

    with pytest.raises(SecretDecryptionError) as raised:
        cipher_for(after(tmp_path)).decrypt(stored, "sub_a")
    assert_no_key_in(str(raised.value))


# --- portal sessions -----------------------------------------------------------------------------


def test_a_session_signed_under_the_old_key_stays_valid_after_the_rotation(
    tmp_path: Path,
) -> None:
    cookie = seal_session(portal_session_key(before(tmp_path)), claims(), b"n" * 12)

    assert open_session_under_any(portal_session_keys(after(tmp_path)), cookie, NOW) == claims()


def test_sessions_after_the_rotation_are_signed_under_the_new_key(tmp_path: Path) -> None:
    keys = portal_session_keys(after(tmp_path))
    assert keys[0] == portal_session_key(after(tmp_path))
    cookie = seal_session(keys[0], claims(), b"n" * 12)

    assert open_session_under_any(keys, cookie, NOW) == claims()
    assert open_session_under_any(portal_session_keys(before(tmp_path)), cookie, NOW) is None


def test_a_session_under_a_key_not_listed_does_not_open(tmp_path: Path) -> None:
    stranger = build_settings(secret_key=STRANGER, data_dir=tmp_path)
    cookie = seal_session(portal_session_key(stranger), claims(), b"n" * 12)

    assert open_session_under_any(portal_session_keys(after(tmp_path)), cookie, NOW) is None


def test_a_form_rendered_before_the_rotation_still_posts(tmp_path: Path) -> None:
    token = csrf_token(portal_session_key(before(tmp_path)), "s" * 32)
    stranger = csrf_token(portal_session_key(build_settings(secret_key=STRANGER)), "s" * 32)
    keys = portal_session_keys(after(tmp_path))

    assert csrf_matches_any(keys, "s" * 32, token)
    assert not csrf_matches_any(keys, "s" * 32, stranger)
    assert not csrf_matches_any(keys, "t" * 32, token)
