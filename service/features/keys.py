"""Clients, API keys and per-client limits: minting a key, listing, revoking, limits and the
callback token (the `phonebridge api-key` commands), and recognising a presented key (the REST
API's bearer check and the portal's sign-in, through `service.api.auth`).

A key is `pbk_` followed by 32 random bytes in URL-safe base64. Only its SHA-256 digest is stored;
a presented key is looked up by that digest (a unique index) and confirmed with a constant-time
comparison, so neither the lookup nor the check reveals how much of a guess was right.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from psycopg import AsyncConnection as PsycopgConnection
from psycopg.rows import DictRow
from sqlalchemy.ext.asyncio import AsyncConnection

from service.clock import utc_now
from service.config import ConfigError, Settings
from service.store import clients as client_store
from service.store.clients import (
    ClientRow,
    KeyRow,
    StoredKey,
    insert_client_with_key,
)
from service.store.db import create_engine_for

__all__ = ["ClientRow", "KeyRow", "StoredKey"]

# A connection of the API's hot pool, where a presented key is looked up.
KeyConnection = PsycopgConnection[DictRow]

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


class AccountError(ConfigError):
    """An operator's command that names something that is not there, or is ambiguous: one line
    on stderr and a non-zero exit, like a configuration problem."""


_KEEP: Final = object()


@dataclass(frozen=True)
class ClientLimits:
    """Changes to a client's own limits: intake and the daily check budget (None follows the
    setting, 0 means no limit), and its poll schedule's p95 lag target (None follows the
    setting); one left out keeps its value."""

    max_rps: int | object | None = _KEEP
    max_pending: int | object | None = _KEEP
    max_checks_per_day: int | object | None = _KEEP
    poll_target_p95_s: float | object | None = _KEEP

    def changes(self) -> dict[str, float | None]:
        named = (
            ("max_rps", self.max_rps),
            ("max_pending", self.max_pending),
            ("max_checks_per_day", self.max_checks_per_day),
            ("poll_target_p95_s", self.poll_target_p95_s),
        )
        return {
            name: value  # type: ignore[misc]
            for name, value in named
            if value is not _KEEP
        }


async def _one_client(conn: AsyncConnection, name_or_id: str) -> ClientRow:
    found = await client_store.find_clients(conn, name_or_id.strip())
    if not found:
        raise AccountError(f"no client named or numbered {name_or_id!r}")
    if len(found) > 1:
        ids = ", ".join(str(client.id) for client in found)
        raise AccountError(
            f"{len(found)} clients are named {name_or_id!r} (ids {ids}): give the id"
        )
    return found[0]


async def add_key(settings: Settings, client: str) -> tuple[int, str]:
    """Another key for an existing client (named or numbered `client`): its id and the key."""
    key = generate_api_key()
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            found = await _one_client(conn, client)
            key_id = await client_store.insert_key(
                conn,
                client_id=found.id,
                name=found.name,
                key_prefix=key[:SHOWN_KEY_CHARS],
                key_hash=api_key_digest(key),
            )
    finally:
        await engine.dispose()
    return key_id, key


async def list_keys(settings: Settings, client: str | None) -> list[KeyRow]:
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            client_id = None if client is None else (await _one_client(conn, client)).id
            return await client_store.list_keys(conn, client_id)
    finally:
        await engine.dispose()


async def revoke_key(settings: Settings, key_id: int) -> datetime:
    """Revoke a key; API processes stop accepting it within their key cache's time (5 s)."""
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            revoked_at = await client_store.revoke_key(conn, key_id, utc_now())
    finally:
        await engine.dispose()
    if revoked_at is None:
        raise AccountError(f"no API key with id {key_id}")
    return revoked_at


async def set_limits(settings: Settings, client: str, limits: ClientLimits) -> ClientRow:
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            found = await _one_client(conn, client)
            return await client_store.set_client_limits(conn, found.id, limits.changes())
    finally:
        await engine.dispose()


async def rotate_callback(settings: Settings, client: str) -> tuple[ClientRow, datetime]:
    """Give a client (named or numbered `client`) a new callback URL; the old one keeps working
    for PHONEBRIDGE_TASK_TTL_S, so checks already submitted with it still call back. Returns the
    client and when the old URL stops working."""
    grace_until = utc_now() + timedelta(seconds=settings.task_ttl_s)
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            found = await _one_client(conn, client)
            await client_store.rotate_callback(conn, found.id, grace_until)
    finally:
        await engine.dispose()
    return found, grace_until


def format_key_line(row: KeyRow) -> str:
    """One line of `api-key list`: id, client, prefix, created, last used, revoked."""

    def stamp(value: datetime | None) -> str:
        return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return "\t".join(
        [
            str(row.id),
            f"{row.client_id}:{row.client_name}",
            row.prefix + "...",
            stamp(row.created_at),
            stamp(row.last_used_at),
            stamp(row.revoked_at),
        ]
    )


KEY_LIST_HEADER = "\t".join(["key_id", "client", "prefix", "created", "last_used", "revoked"])


# --- recognising a presented key (the hot path: a psycopg connection of the API's pool) ---------


async def find_active_key(conn: KeyConnection, digest: bytes) -> StoredKey | None:
    """The active key with this SHA-256 digest, with its client's limits; None when unknown or
    revoked. The caller confirms the digest in constant time."""
    return await client_store.find_active_key(conn, digest)


async def stamp_keys_used(
    conn: KeyConnection, key_ids: list[int], now: datetime, unless_since: datetime
) -> None:
    """Record that these keys were used now, unless already recorded after `unless_since`."""
    await client_store.stamp_keys_used(conn, key_ids, now, unless_since)


async def count_pending_tasks(conn: KeyConnection, client_id: int) -> int:
    """The client's pending tasks, as its pending limit counts them."""
    return await client_store.count_pending_tasks(conn, client_id)
