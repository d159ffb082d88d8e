"""Clients and API keys: minting a key, and recognising one.

A key is `pbk_` followed by 32 random bytes in URL-safe base64. Only its SHA-256 digest is stored;
a presented key is looked up by that digest (a unique index) and confirmed with a constant-time
comparison, so neither the lookup nor the check reveals how much of a guess was right.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

from service.config import ConfigError, Settings
from service.store.clients import insert_client_with_key
from service.store.db import create_engine_for

API_KEY_PREFIX = "pbk_"
API_KEY_RANDOM_BYTES = 32
# The part of a key shown to operators to tell keys apart: the prefix and 8 characters.
SHOWN_KEY_CHARS = len(API_KEY_PREFIX) + 8
CLIENT_NAME_MAX = 200

_KEY_SHAPE = re.compile(
    re.escape(API_KEY_PREFIX) + r"[A-Za-z0-9_-]{" + str((API_KEY_RANDOM_BYTES * 4 + 2) // 3) + "}"
)


def generate_api_key() -> str:
    random_part = base64.urlsafe_b64encode(secrets.token_bytes(API_KEY_RANDOM_BYTES))
    return API_KEY_PREFIX + random_part.decode("ascii").rstrip("=")


def looks_like_api_key(candidate: str) -> bool:
    """True when the text has the shape of a key; anything else is refused without a lookup."""
    return _KEY_SHAPE.fullmatch(candidate) is not None


def api_key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii")).digest()


async def create_client_and_key(settings: Settings, name: str) -> str:
    """Create a client named `name` with one API key, and return the key (shown once, never
    stored)."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > CLIENT_NAME_MAX or "\x00" in cleaned:
        # Reported like a configuration problem: one line on stderr and a non-zero exit.
        raise ConfigError(f"--name must be 1-{CLIENT_NAME_MAX} characters")
    key = generate_api_key()
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await insert_client_with_key(
                conn, name=cleaned, key_prefix=key[:SHOWN_KEY_CHARS], key_hash=api_key_digest(key)
            )
    finally:
        await engine.dispose()
    return key
