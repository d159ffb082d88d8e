"""What one `POST /v1/tasks` costs in round trips with every per-client limit off (the default):
no Redis command, and no statement but the INSERT, with the key lookup added when the key cache
is cold (issue 28). Counted on the real PostgreSQL and Redis: every statement the API's hot pool
sends goes through a real psycopg cursor that records it, every one its intake pool sends through
a real asyncpg connection that records it (and SQLAlchemy's engine is listened to), and every
command Redis runs from this process's connections is read off Redis's MONITOR, up to a marker
command sent after the request."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from fastapi import FastAPI
from psycopg import AsyncCursor
from redis.asyncio import Redis
from sqlalchemy import event

from service.api.app import create_app
from service.api.resources import hot_pool, new_intake_pool
from tests.support.api import asgi_client, json_bearer
from tests.support.settings import make_settings

SENT: list[str] = []


INSERT = "INSERT INTO tasks"
KEY_LOOKUP = "SELECT k.id, k.client_id, k.key_hash"
KEY_USE_STAMP = "UPDATE api_keys SET last_used_at"


def _noted(statement: object) -> str:
    """What a statement is: one of the names above, or its first words."""
    words = " ".join(str(statement).split())
    known = [name for name in (INSERT, KEY_LOOKUP, KEY_USE_STAMP) if words.startswith(name)]
    return known[0] if known else words[:60]


class RecordingCursor(AsyncCursor[Any]):
    """psycopg's own cursor, noting each statement it sends."""

    async def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
        SENT.append(_noted(query))
        return await super().execute(query, params, **options)


class RecordingConnection(asyncpg.Connection):  # generic in asyncpg-stubs only
    """asyncpg's own connection, noting each statement it is asked to send (the connection's
    own setup, asyncpg's type introspection when it opens, is not a request's)."""

    async def execute(self, query: str, *args: Any, **options: Any) -> Any:
        SENT.append(_noted(query))
        return await super().execute(query, *args, **options)

    async def fetch(self, query: str, *args: Any, **options: Any) -> Any:
        SENT.append(_noted(query))
        return await super().fetch(query, *args, **options)

    async def fetchrow(self, query: str, *args: Any, **options: Any) -> Any:
        SENT.append(_noted(query))
        return await super().fetchrow(query, *args, **options)

    async def fetchval(self, query: str, *args: Any, **options: Any) -> Any:
        SENT.append(_noted(query))
        return await super().fetchval(query, *args, **options)


@pytest.fixture
async def counted_app(database_url: str, redis_url: str) -> AsyncIterator[FastAPI]:
    # The sign-in throttle on, as it is by default (the test settings turn it off).
    settings = make_settings(database_url, redis_url, sign_in_failures_per_minute=20)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        resources = app.state.resources
        pool = hot_pool(settings, cursor_factory=RecordingCursor)
        await pool.open(wait=True)
        intake = await new_intake_pool(settings, connection_class=RecordingConnection)
        app.state.resources = replace(resources, pool=pool, intake=intake)
        engine = resources.engine.sync_engine

        def note(*args: Any) -> None:
            SENT.append(_noted(args[2]))

        event.listen(engine, "before_cursor_execute", note)
        try:
            yield app
        finally:
            event.remove(engine, "before_cursor_execute", note)
            await pool.close()
            await intake.close()


class RedisCommands:
    """The commands Redis runs for this process while `counted` is open (MONITOR)."""

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url

    async def during(self, api: httpx.AsyncClient, key: str, task_id: str) -> list[str]:
        marker = f"round-trips-marker-{secrets.token_hex(4)}"
        monitor_client: Redis[Any] = Redis.from_url(self._url)
        marker_client: Redis[Any] = Redis.from_url(self._url)
        try:
            await marker_client.ping()  # connected before the monitor starts: not counted
            async with monitor_client.monitor() as monitor:
                answer = await api.post(
                    "/v1/tasks", content=f'{{"task_id":"{task_id}"}}', headers=json_bearer(key)
                )
                assert answer.status_code == 201, answer.text
                await marker_client.echo(marker)
                ours = _local_ports_to_redis()
                commands: list[str] = []
                while True:
                    seen = await monitor.next_command()
                    if marker in seen["command"]:
                        return commands
                    port = str(seen.get("client_port", ""))  # empty for Lua and sockets
                    if port.isdigit() and int(port) in ours:
                        commands.append(seen["command"])
        finally:
            await monitor_client.aclose()  # type: ignore[attr-defined]
            await marker_client.aclose()  # type: ignore[attr-defined]


def _local_ports_to_redis() -> set[int]:
    return {
        connection.laddr.port
        for connection in psutil.Process().net_connections(kind="tcp")
        if connection.raddr and connection.raddr.port == 6379
    }


async def _register(counted_app: FastAPI, redis_url: str, key: str) -> tuple[list[str], list[str]]:
    """One registration: the statements sent and the Redis commands run meanwhile (after the
    key-use stamp it may have started in the background has ended)."""
    SENT.clear()
    async with asgi_client(counted_app) as api:
        commands = await RedisCommands(redis_url).during(api, key, f"T-{secrets.token_hex(4)}")
    await counted_app.state.resources.key_usage.drain()
    return list(SENT), commands


async def test_a_registration_with_the_key_cached_sends_the_insert_alone_and_nothing_to_redis(
    counted_app: FastAPI, redis_url: str, key: str
) -> None:
    await _register(counted_app, redis_url, key)  # the key is now cached, its use stamped

    statements, commands = await _register(counted_app, redis_url, key)

    assert statements == [INSERT]
    assert commands == []


async def test_a_cold_key_cache_adds_only_the_key_lookup_and_the_addresss_throttle_check(
    counted_app: FastAPI, redis_url: str, key: str
) -> None:
    await _register(counted_app, redis_url, key)  # the key's use stamped for this minute
    counted_app.state.resources.keys.forget_all()

    statements, commands = await _register(counted_app, redis_url, key)

    assert statements == [KEY_LOOKUP, INSERT]
    # Whether the presenting address is refused for failed sign-ins: asked before its key is
    # looked at, so that a throttled guesser learns nothing (service/api/signins.py).
    assert len(commands) == 1, commands
    assert commands[0].startswith("GET phonebridge:sign-in-failures:"), commands


async def test_a_key_used_for_the_first_time_this_minute_has_its_use_stamped_beside(
    counted_app: FastAPI, redis_url: str, key: str
) -> None:
    statements, _ = await _register(counted_app, redis_url, key)

    # The stamp is written off the request's path, at most once a minute per key and process
    # (service/api/keyusage.py).
    assert sorted(statements) == sorted([KEY_LOOKUP, INSERT, KEY_USE_STAMP])
