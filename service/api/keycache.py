"""A short-lived, bounded, in-process memory of API keys that were recently confirmed, keyed by
their SHA-256 digest, so a busy client costs one database lookup every few seconds instead of
one per request. A revoked key stops working within `ttl_s`, and a change to its client's limits
takes effect within it."""

from __future__ import annotations

import time
from collections.abc import Callable

from service.features.keys import StoredKey

DEFAULT_TTL_S = 5.0
DEFAULT_MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, tuple[StoredKey, float]] = {}

    def find(self, key_digest: bytes) -> StoredKey | None:
        entry = self._entries.get(key_digest)
        if entry is None:
            return None
        stored, expires_at = entry
        if self._clock() >= expires_at:
            del self._entries[key_digest]
            return None
        return stored

    def remember(self, key_digest: bytes, stored: StoredKey) -> None:
        if key_digest not in self._entries and len(self._entries) >= self._max_entries:
            # Dicts keep insertion order: drop the oldest entry.
            del self._entries[next(iter(self._entries))]
        self._entries[key_digest] = (stored, self._clock() + self._ttl_s)

    def forget_all(self) -> None:
        self._entries.clear()
