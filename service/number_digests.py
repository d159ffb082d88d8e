"""The keys of phone numbers' keyed digests (`service.domain.phone_numbers.number_digest`), which
recognise a number without keeping it: an Idempotency-Key's body, a job's duplicates, an earlier
answer.

A digest is an HMAC under a key derived from PHONEBRIDGE_SECRET_KEY, so a new secret gives every
number a new digest. During a rotation the keys are the current one and one per secret of
PHONEBRIDGE_SECRET_KEY_PREVIOUS, in that order: keep `NumberDigests.current(number)` (the first),
and look kept digests up with all of `NumberDigests.every(number)` (`= ANY(...)`), so what was
kept before the rotation still matches. A digest kept under a previous key stops matching once
that key leaves the list: docs/operations.md's rotation waits out the Idempotency-Keys' 24 hours
before dropping it, and for a cache of earlier answers it is only a miss.
"""

from __future__ import annotations

from service.config import Settings
from service.domain.phone_numbers import (
    NUMBER_DIGEST_KEY_LABEL,
    PhoneNumber,
    number_digest,
    number_digests,
)
from service.secret_key import deployment_keys


def number_digest_keys(settings: Settings) -> tuple[bytes, ...]:
    """The number digest's key under every secret still read, the current one first."""
    return deployment_keys(settings, NUMBER_DIGEST_KEY_LABEL)


class NumberDigests:
    """A deployment's number digests: `current` is the one to keep (and to dedupe within one
    request), `every` the ones a lookup of kept digests matches (`= ANY(...)`), current first."""

    def __init__(self, keys: tuple[bytes, ...]) -> None:
        self._keys = keys

    def __repr__(self) -> str:
        return f"NumberDigests(<{len(self._keys)} keys hidden>)"

    def current(self, number: PhoneNumber) -> bytes:
        return number_digest(self._keys[0], number)

    def every(self, number: PhoneNumber) -> tuple[bytes, ...]:
        return number_digests(self._keys, number)


def number_digests_for(settings: Settings) -> NumberDigests:
    """This deployment's number digests (its keys derived once, here)."""
    return NumberDigests(number_digest_keys(settings))
