"""The keys of phone numbers' keyed digests (`service.domain.phone_numbers.number_digest`), which
recognise a number without keeping it: an Idempotency-Key's body, a job's duplicates, an earlier
answer.

A digest is an HMAC under a key derived from PHONEBRIDGE_SECRET_KEY, so a new secret gives every
number a new digest. During a rotation the keys are the current one and one per secret of
PHONEBRIDGE_SECRET_KEY_PREVIOUS, in that order: write (keep) the first digest of
`number_digests(number_digest_keys(settings), number)`, and look up kept digests with all of
them (`= ANY(...)`), so what was kept before the rotation still matches. Digests kept under a
previous key stop matching once that key leaves the list, which is only a cache's miss: the kept
rows that depend on them live no longer than docs/operations.md's grace period.
"""

from __future__ import annotations

from service.config import Settings
from service.domain.phone_numbers import NUMBER_DIGEST_KEY_LABEL
from service.secret_key import deployment_keys


def number_digest_keys(settings: Settings) -> tuple[bytes, ...]:
    """The number digest's key under every secret still read, the current one first."""
    return deployment_keys(settings, NUMBER_DIGEST_KEY_LABEL)
