"""Clients and their API keys. Keys are found by the SHA-256 digest of the key, never by the key.

The lookup runs on every uncached API call, and the `last_used_at` stamp at most once a minute
per key, both on the API's psycopg pool (see store/tasks.py for why); the operator's commands
(add, list, revoke, limits) are rare and use SQLAlchemy Core like the rest of the store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection as PsycopgConnection
from psycopg.rows import DictRow
from sqlalchemy import Row, cast, func, insert, or_, select, update
from sqlalchemy import String as SqlString
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.states import TaskState
from service.store.tables.clients import ApiKey, Client


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An unrevoked key as authentication needs it, with its client's own limit overrides
    (None: the setting applies; 0: no limit)."""

    key_id: int
    client_id: int
    key_hash: bytes
    max_rps: int | None
    max_pending: int | None
    max_checks_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class ClientRow:
    id: int
    name: str
    max_rps: int | None
    max_pending: int | None
    max_checks_per_day: int | None = None
    poll_target_p95_s: float | None = None


@dataclass(frozen=True, slots=True)
class KeyRow:
    """An API key as the operator sees it: never the key, only its first characters."""

    id: int
    client_id: int
    client_name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


async def insert_client_with_key(
    conn: AsyncConnection, *, name: str, key_prefix: str, key_hash: bytes
) -> int:
    """Create a client and its first API key; the caller's transaction commits both or neither."""
    client_id = (
        await conn.execute(insert(Client).values(name=name).returning(Client.id))
    ).scalar_one()
    await insert_key(conn, client_id=client_id, name=name, key_prefix=key_prefix, key_hash=key_hash)
    return client_id


async def insert_key(
    conn: AsyncConnection, *, client_id: int, name: str, key_prefix: str, key_hash: bytes
) -> int:
    """Another key for an existing client; returns the key's id."""
    key_id: int = (
        await conn.execute(
            insert(ApiKey)
            .values(client_id=client_id, name=name, prefix=key_prefix, key_hash=key_hash)
            .returning(ApiKey.id)
        )
    ).scalar_one()
    return key_id


_CLIENT_COLUMNS = (
    Client.id,
    Client.name,
    Client.max_rps,
    Client.max_pending,
    Client.max_checks_per_day,
    Client.poll_target_p95_s,
)


def _client_row(
    row: Row[int, str, int | None, int | None, int | None, float | None],
) -> ClientRow:
    id_, name, max_rps, max_pending, max_checks_per_day, poll_target_p95_s = row
    return ClientRow(
        id=id_,
        name=name,
        max_rps=max_rps,
        max_pending=max_pending,
        max_checks_per_day=max_checks_per_day,
        poll_target_p95_s=poll_target_p95_s,
    )


async def find_clients(conn: AsyncConnection, name_or_id: str) -> list[ClientRow]:
    """The clients whose id (as text) or name is exactly `name_or_id`, by id: an operator names a
    client either way, and two clients may share a name."""
    query = (
        select(*_CLIENT_COLUMNS)
        .where(or_(cast(Client.id, SqlString) == name_or_id, Client.name == name_or_id))
        .order_by(Client.id)
    )
    return [_client_row(row) for row in await conn.execute(query)]


async def list_keys(conn: AsyncConnection, client_id: int | None = None) -> list[KeyRow]:
    """Every key (of one client, when given), oldest first."""
    query = (
        select(
            ApiKey.id,
            ApiKey.client_id,
            Client.name.label("client_name"),
            ApiKey.prefix,
            ApiKey.created_at,
            ApiKey.last_used_at,
            ApiKey.revoked_at,
        )
        .join(Client, Client.id == ApiKey.client_id)
        .order_by(ApiKey.id)
    )
    if client_id is not None:
        query = query.where(ApiKey.client_id == client_id)
    return [_key_row(row) for row in await conn.execute(query)]


def _key_row(
    row: Row[int, int, str, str, datetime, datetime | None, datetime | None],
) -> KeyRow:
    id_, client_id, client_name, prefix, created_at, last_used_at, revoked_at = row
    return KeyRow(
        id=id_,
        client_id=client_id,
        client_name=client_name,
        prefix=prefix,
        created_at=created_at,
        last_used_at=last_used_at,
        revoked_at=revoked_at,
    )


async def revoke_key(conn: AsyncConnection, key_id: int, now: datetime) -> datetime | None:
    """Revoke a key (once: revoking again keeps the first time); the time it was revoked, or None
    when there is no such key."""
    revoked_at: datetime | None = (
        await conn.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(revoked_at=func.coalesce(ApiKey.revoked_at, now))
            .returning(ApiKey.revoked_at)
        )
    ).scalar_one_or_none()
    return revoked_at


async def set_client_limits(
    conn: AsyncConnection, client_id: int, changes: Mapping[str, float | None]
) -> ClientRow:
    """Change one client's limit overrides (`max_rps`, `max_pending`, `max_checks_per_day`;
    None: follow the setting, 0: no limit; `poll_target_p95_s`, None: follow the setting); the
    client as it is afterwards."""
    row = (
        await conn.execute(
            update(Client)
            .where(Client.id == client_id)
            .values(
                {getattr(Client, name): value for name, value in changes.items()}
                or {Client.id: Client.id}
            )
            .returning(*_CLIENT_COLUMNS)
        )
    ).one()
    return _client_row(row)


async def rotate_callback(conn: AsyncConnection, client_id: int, grace_until: datetime) -> int:
    """Move the client to its next callback generation: its current token's digest stays
    accepted until `grace_until`, the new token's is kept at its first use
    (service/checks/callback_hints.py). Returns the new generation."""
    generation: int = (
        await conn.execute(
            update(Client)
            .where(Client.id == client_id)
            .values(
                callback_generation=Client.callback_generation + 1,
                previous_callback_token_hash=Client.callback_token_hash,
                previous_callback_valid_until=grace_until,
                callback_token_hash=None,
            )
            .returning(Client.callback_generation)
        )
    ).scalar_one()
    return generation


_FIND_ACTIVE_KEY = """
    SELECT k.id, k.client_id, k.key_hash, c.max_rps, c.max_pending, c.max_checks_per_day
    FROM api_keys k JOIN clients c ON c.id = k.client_id
    WHERE k.key_hash = %(key_hash)s AND k.revoked_at IS NULL
"""


async def find_active_key(conn: PsycopgConnection[DictRow], key_hash: bytes) -> StoredKey | None:
    """The unrevoked key with this digest, if any (one unique-index lookup, and its client by
    primary key)."""
    row = await (await conn.execute(_FIND_ACTIVE_KEY, {"key_hash": key_hash})).fetchone()
    if row is None:
        return None
    return StoredKey(
        key_id=row["id"],
        client_id=row["client_id"],
        key_hash=bytes(row["key_hash"]),
        max_rps=row["max_rps"],
        max_pending=row["max_pending"],
        max_checks_per_day=row["max_checks_per_day"],
    )


# Guarded, so that when several API processes stamp the same key in the same minute only the
# first one writes a new row version.
_STAMP_LAST_USED = """
    UPDATE api_keys SET last_used_at = %(now)s
    WHERE id = ANY(%(ids)s) AND (last_used_at IS NULL OR last_used_at < %(not_before)s)
"""


async def stamp_keys_used(
    conn: PsycopgConnection[DictRow], key_ids: Sequence[int], now: datetime, not_before: datetime
) -> None:
    """Record that these keys were used at `now`, unless that was already recorded after
    `not_before`."""
    if key_ids:
        await conn.execute(
            _STAMP_LAST_USED, {"ids": list(key_ids), "now": now, "not_before": not_before}
        )


_COUNT_PENDING = f"""
    SELECT count(*) AS pending FROM tasks
    WHERE client_id = %(client_id)s AND state = '{TaskState.PENDING}'
"""  # noqa: S608 - only enum values are interpolated


async def count_pending_tasks(conn: PsycopgConnection[DictRow], client_id: int) -> int:
    """How many of this client's tasks are pending (for its PHONEBRIDGE_CLIENT_MAX_PENDING; the
    caller keeps the count in Redis for a few seconds rather than count per request)."""
    row = await (await conn.execute(_COUNT_PENDING, {"client_id": client_id})).fetchone()
    return 0 if row is None else int(row["pending"])
