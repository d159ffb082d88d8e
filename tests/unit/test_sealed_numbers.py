"""Phone numbers kept for a later submit, sealed at rest (service/sealed_numbers.py): they open only
with the deployment's key and for the record they belong to, and a sealed number shows nothing."""

from __future__ import annotations

import pytest

from service.config import build_settings
from service.sealed_numbers import (
    NumberSeal,
    SealedNumberError,
    number_seal_for,
    recheck_binding,
)
from service.secret_key import derive_key
from service.webhooks.encryption import cipher_for

NUMBER = "525512341234"
BINDING = recheck_binding(7, "T-1")


def seal_of(material: bytes) -> NumberSeal:
    return NumberSeal(derive_key(material, b"test numbers"))


def test_a_number_round_trips_and_its_seal_shows_nothing_of_it() -> None:
    seal = seal_of(b"key material")
    sealed = seal.seal(NUMBER, BINDING)
    assert seal.open(sealed, BINDING) == NUMBER
    assert NUMBER.encode() not in sealed
    assert NUMBER[-4:].encode() not in sealed[13:]  # not even its last digits
    assert seal.seal(NUMBER, BINDING) != sealed  # a fresh nonce each time


def test_a_seal_opens_only_for_its_own_record() -> None:
    seal = seal_of(b"key material")
    sealed = seal.seal(NUMBER, BINDING)
    with pytest.raises(SealedNumberError):
        seal.open(sealed, recheck_binding(7, "T-2"))
    with pytest.raises(SealedNumberError):
        seal.open(sealed, recheck_binding(8, "T-1"))


def test_a_seal_opens_only_with_its_key_and_a_damaged_one_not_at_all() -> None:
    sealed = seal_of(b"key one").seal(NUMBER, BINDING)
    with pytest.raises(SealedNumberError, match="PHONEBRIDGE_SECRET_KEY"):
        seal_of(b"key two").open(sealed, BINDING)
    with pytest.raises(SealedNumberError):
        seal_of(b"key one").open(b"\x00garbage", BINDING)
    with pytest.raises(SealedNumberError):
        seal_of(b"key one").open(sealed[:-1], BINDING)


def test_the_seal_never_shows_its_key() -> None:
    assert "hidden" in repr(seal_of(b"key"))


def test_the_deployments_numbers_have_a_key_of_their_own() -> None:
    settings = build_settings(secret_key="a-deployment-secret-of-enough-length")
    sealed = number_seal_for(settings).seal(NUMBER, BINDING)
    assert number_seal_for(settings).open(sealed, BINDING) == NUMBER
    # Not the webhook secrets' key: neither opens what the other seals.
    webhook_sealed = cipher_for(settings).encrypt(NUMBER, BINDING)
    with pytest.raises(SealedNumberError):
        number_seal_for(settings).open(webhook_sealed, BINDING)
