"""The keys of phone numbers' digests (service/number_digests.py) across a rotation of
PHONEBRIDGE_SECRET_KEY: one digest per listed key, the current one kept, every one matched, so a
number seen before the rotation (an Idempotency-Key's body, an earlier answer) is recognised
after it."""

from __future__ import annotations

from pathlib import Path

from service.config import Settings, build_settings
from service.domain.checks import CheckRequest
from service.domain.phone_numbers import PhoneNumber, number_digest, parse_phone_number
from service.number_digests import number_digest_keys, number_digests_for

OLD = "the-old-secret-key-of-this-deployment"
OLDER = "an-even-older-secret-key-of-this-deployment"
NEW = "the-new-secret-key-of-this-deployment"


def before(tmp_path: Path) -> Settings:
    return build_settings(secret_key=OLD, data_dir=tmp_path)


def after(tmp_path: Path) -> Settings:
    return build_settings(secret_key=NEW, secret_key_previous=f"{OLD},{OLDER}", data_dir=tmp_path)


def number() -> PhoneNumber:
    parsed = parse_phone_number("525512341234", ("MX",))
    assert isinstance(parsed, PhoneNumber)
    return parsed


def test_a_numbers_digests_are_one_per_key_the_current_first(tmp_path: Path) -> None:
    keys = number_digest_keys(after(tmp_path))
    digests = number_digest_keys(before(tmp_path))

    assert len(keys) == 3
    assert keys[1] == digests[0]
    assert number_digest(keys[0], number()) != number_digest(keys[1], number())


def test_an_idempotent_retry_across_the_rotation_is_the_same_body(tmp_path: Path) -> None:
    check = CheckRequest(number=number(), metadata_json='{"a":1}')
    kept = check.fingerprints(number_digest_keys(before(tmp_path)))[0]
    fingerprints = check.fingerprints(number_digest_keys(after(tmp_path)))

    assert kept in fingerprints
    assert fingerprints[0] != kept  # what is kept from now on is under the new key
    other = CheckRequest(number=number(), metadata_json='{"a":2}')
    assert kept not in other.fingerprints(number_digest_keys(after(tmp_path)))


def test_a_deployments_number_digests_keep_the_current_and_match_every_listed_key(
    tmp_path: Path,
) -> None:
    digests = number_digests_for(after(tmp_path))
    kept_before = number_digests_for(before(tmp_path)).current(number())

    assert digests.every(number())[0] == digests.current(number())
    assert kept_before in digests.every(number())
    assert kept_before != digests.current(number())
    assert "hidden" in repr(digests)
