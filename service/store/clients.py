"""Clients and their API keys. Keys are found by the SHA-256 digest of the key, never by the key.

The lookup runs on every uncached API call, on the API's psycopg pool (see store/tasks.py for
why); creating a client is rare and uses SQLAlchemy like the rest of the store."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import AsyncConnection as PsycopgConnection
from psycopg.rows import DictRow
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.tables import ApiKey, Client


@dataclass(frozen=True, slots=True)
class StoredKey:
    client_id: int
    key_hash: bytes


async def insert_client_with_key(
    conn: AsyncConnection, *, name: str, key_prefix: str, key_hash: bytes
) -> int:
    """Create a client and its first API key; the caller's transaction commits both or neither."""
    client_id = (
        await conn.execute(insert(Client).values(name=name).returning(Client.id))
    ).scalar_one()
    await conn.execute(
        insert(ApiKey).values(client_id=client_id, name=name, prefix=key_prefix, key_hash=key_hash)
    )
    return client_id


_FIND_ACTIVE_KEY = """
    SELECT client_id, key_hash FROM api_keys WHERE key_hash = %(key_hash)s AND revoked_at IS NULL
"""


async def find_active_key(conn: PsycopgConnection[DictRow], key_hash: bytes) -> StoredKey | None:
    """The unrevoked key with this digest, if any (one unique-index lookup)."""
    row = await (await conn.execute(_FIND_ACTIVE_KEY, {"key_hash": key_hash})).fetchone()
    if row is None:
        return None
    return StoredKey(client_id=row["client_id"], key_hash=bytes(row["key_hash"]))
