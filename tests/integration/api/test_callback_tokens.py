"""The callback token's life (issue 29, item 7): only its digest is stored, it rotates with a grace
period in which the old URL still calls back (`phonebridge api-key rotate-callback`), a changed
secret key works like a rotation, and the early hints a token's holder can leave are capped per
client. Against the run's PostgreSQL, through the API's own services (HintService, CallbackUrls:
what the hook route and GET /v1/callback-url call)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg.rows import DictRow, dict_row
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.resources import libpq_url
from service.checks.callback_hints import CallbackUrls, ConnectionSource, HintService
from service.clock import Clock
from service.config import Settings
from service.domain.states import HintOutcome
from service.features.keys import rotate_callback
from service.store.db import transaction
from tests.support.commands import clean_environment, create_api_key, run_command
from tests.support.factories import insert_client, insert_tasks
from tests.support.settings import make_settings


@pytest.fixture
def token_settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(
        database_url, redis_url, public_url="http://phonebridge.test", hint_min_interval_s=0.001
    )


def connection_source(settings: Settings) -> ConnectionSource:
    @asynccontextmanager
    async def connect() -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
        conn = await psycopg.AsyncConnection.connect(
            libpq_url(settings.sqlalchemy_url), autocommit=True, row_factory=dict_row
        )
        async with conn:
            yield conn

    return connect


def fixed_clock(at: datetime) -> Clock:
    return lambda: at


async def token_of(settings: Settings, client_id: int) -> str:
    """The token an API process that starts now hands out (a fresh cache)."""
    return await CallbackUrls(settings, connection_source(settings)).token_for(client_id)


async def hint(settings: Settings, token: str, task_id: str) -> HintOutcome:
    return await HintService(settings, connection_source(settings)).receive(token, task_id)


async def clients_row(
    sessions: async_sessionmaker[AsyncSession], client_id: int
) -> dict[str, object]:
    async with sessions() as session:
        row = (
            (await session.execute(text("SELECT * FROM clients WHERE id = :id"), {"id": client_id}))
            .mappings()
            .one()
        )
    return dict(row)


async def test_only_the_tokens_digest_is_stored(
    token_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = token_settings
    client_id = await insert_client(sessions)
    token = await token_of(settings, client_id)

    row = await clients_row(sessions, client_id)
    assert row["callback_token_hash"] == hashlib.sha256(token.encode()).digest()
    assert "callback_token" not in row
    assert not any(token in str(value) for value in row.values())
    assert await token_of(settings, client_id) == token  # derived again, the same


async def test_a_rotated_url_keeps_working_for_the_grace_period_and_then_stops(
    token_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = token_settings
    client_id = await insert_client(sessions)
    await insert_tasks(sessions, client_id, ["ROT-1", "ROT-2", "ROT-3"], next_poll_in_s=60)
    old = await token_of(settings, client_id)

    _, old_until = await rotate_callback(settings, str(client_id))
    new = await token_of(settings, client_id)

    assert new != old
    assert timedelta(seconds=settings.task_ttl_s - 60) < old_until - datetime.now(UTC)
    assert await hint(settings, old, "ROT-1") is HintOutcome.MATCHED
    assert await hint(settings, new, "ROT-2") is HintOutcome.MATCHED
    async with transaction(sessions) as session:
        await session.execute(
            text(
                "UPDATE clients SET previous_callback_valid_until = now() - interval '1 second' "
                "WHERE id = :id"
            ),
            {"id": client_id},
        )
    assert await hint(settings, old, "ROT-3") is HintOutcome.UNKNOWN
    assert await hint(settings, new, "ROT-3") is HintOutcome.MATCHED


async def test_a_changed_secret_key_works_as_a_rotation(
    token_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = token_settings
    client_id = await insert_client(sessions)
    await insert_tasks(sessions, client_id, ["KEY-1", "KEY-2"], next_poll_in_s=60)
    before = await token_of(settings, client_id)
    rekeyed = settings.model_copy(
        update={"secret_key": SecretStr("another-secret-key-of-this-deployment")}
    )

    after = await token_of(rekeyed, client_id)

    assert after != before
    assert await hint(rekeyed, before, "KEY-1") is HintOutcome.MATCHED  # in its grace period
    assert await hint(rekeyed, after, "KEY-2") is HintOutcome.MATCHED


async def test_early_hints_are_capped_per_client_the_oldest_dropped_and_counted(
    token_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = token_settings
    capped = settings.model_copy(update={"early_hints_max": 3})
    client_id = await insert_client(sessions)
    other_id = await insert_client(sessions)
    token = await token_of(capped, client_id)
    await hint(capped, await token_of(capped, other_id), "OTHER-0")
    dropped_before = REGISTRY.get_sample_value("phonebridge_early_hints_dropped_total") or 0.0
    now = datetime.now(UTC)

    for n in range(5):
        service = HintService(
            capped, connection_source(capped), clock=fixed_clock(now + timedelta(seconds=n))
        )
        assert await service.receive(token, f"EARLY-{n}") is HintOutcome.EARLY

    async with sessions() as session:
        kept = (
            await session.execute(
                text("SELECT client_id, task_id FROM early_hints WHERE client_id IN (:a, :b)"),
                {"a": client_id, "b": other_id},
            )
        ).all()
    assert sorted(kept) == [
        (client_id, "EARLY-2"),
        (client_id, "EARLY-3"),
        (client_id, "EARLY-4"),
        (other_id, "OTHER-0"),
    ]
    dropped = REGISTRY.get_sample_value("phonebridge_early_hints_dropped_total")
    assert dropped == dropped_before + 2


def test_the_cli_rotates_a_clients_callback_url_in_one_line(
    database_url: str, tmp_path: Path
) -> None:
    env = clean_environment(PHONEBRIDGE_DATABASE_URL=database_url)
    assert create_api_key(env, tmp_path, "rotating-client").startswith("pbk_")
    rotate = ("api-key", "rotate-callback", "--client")
    rotated = run_command(env, tmp_path, *rotate, "rotating-client")
    assert rotated.returncode == 0, rotated.stderr
    assert "'rotating-client': new callback URL" in rotated.stdout
    assert "keeps working until" in rotated.stdout
    unknown = run_command(env, tmp_path, *rotate, "nobody-at-all")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "phonebridge: no client named or numbered 'nobody-at-all'"
    ]
