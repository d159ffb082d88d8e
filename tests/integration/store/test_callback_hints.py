"""Upstream's callback taken as a hint, in one statement (service/store/callback_hints.py): a
client is found by its token's digest, its pending task made due once per interval, a task not
known yet remembered early, and anything else changes nothing."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import psycopg
from psycopg.rows import DictRow
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.domain.states import HintOutcome
from service.store.callback_hints import (
    HintResult,
    apply_hint,
    callback_generation,
    keep_callback_digest,
)
from tests.support.checks import schedule_of
from tests.support.factories import insert_client, insert_tasks

INTERVAL = timedelta(seconds=2)


async def client_with_token(
    conn: psycopg.AsyncConnection[DictRow], sessions: async_sessionmaker[AsyncSession]
) -> tuple[int, bytes]:
    client_id = await insert_client(sessions)
    generation, kept = await callback_generation(conn, client_id)
    digest = hashlib.sha256(secrets.token_bytes(24)).digest()
    await keep_callback_digest(
        conn, client_id, generation=generation, token_hash=digest, grace_until=utc_now()
    )
    assert kept is None
    assert await callback_generation(conn, client_id) == (generation, digest)
    return client_id, digest


async def hint(
    conn: psycopg.AsyncConnection[DictRow], token_hash: bytes, task_id: str
) -> HintResult:
    now = utc_now()
    return await apply_hint(
        conn,
        token_hash=token_hash,
        task_id=task_id,
        now=now,
        interval=INTERVAL,
        early_until=now + timedelta(hours=1),
        late_since=now - timedelta(seconds=10),
        early_max=10,
    )


async def test_a_hint_makes_a_pending_task_due_once_per_interval(
    conn: psycopg.AsyncConnection[DictRow], sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id, digest = await client_with_token(conn, sessions)
    task_id = f"T-{secrets.token_hex(4)}"
    await insert_tasks(sessions, client_id, [task_id], next_poll_in_s=600.0)

    first = await hint(conn, digest, task_id)
    next_poll_at, last_hint_at = await schedule_of(sessions, task_id)
    second = await hint(conn, digest, task_id)

    assert first.outcome is HintOutcome.MATCHED
    assert next_poll_at is not None
    assert last_hint_at is not None
    assert next_poll_at <= utc_now()
    assert second.outcome is HintOutcome.THROTTLED


async def test_a_hint_for_a_task_not_known_yet_is_kept_early(
    conn: psycopg.AsyncConnection[DictRow], sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, digest = await client_with_token(conn, sessions)

    result = await hint(conn, digest, f"T-{secrets.token_hex(4)}")

    assert result == HintResult(HintOutcome.EARLY, early_dropped=0)


async def test_a_hint_with_an_unknown_token_changes_nothing(
    conn: psycopg.AsyncConnection[DictRow], sessions: async_sessionmaker[AsyncSession]
) -> None:
    client_id, _ = await client_with_token(conn, sessions)
    task_id = f"T-{secrets.token_hex(4)}"
    await insert_tasks(sessions, client_id, [task_id], next_poll_in_s=600.0)
    before = await schedule_of(sessions, task_id)

    result = await hint(conn, hashlib.sha256(b"forged").digest(), task_id)

    assert result.outcome is HintOutcome.UNKNOWN
    assert await schedule_of(sessions, task_id) == before
