"""The API's hot connection pool, and its intake pool (asyncpg), after the server closed their
connections (a restart, an administrator's pg_terminate_backend): the dead ones are noticed
without a query and replaced, so no request fails on one. The chaos suite restarts PostgreSQL
itself; this is the quick check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import psycopg
import pytest
from fastapi import FastAPI

from service.api.resources import (
    HOT_POOL_MIN,
    INTAKE_ATTEMPTS,
    ApiResources,
    closed_by_server,
    hot_connection,
    intake_connection,
    libpq_url,
    on_intake_connection,
)
from service.config import Settings
from service.store.db import IntakeConnection
from tests.support.api import asgi_client, bearer
from tests.support.waiting import wait_until_async


@pytest.fixture
async def connection(
    settings: Settings,
) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    conn = await psycopg.AsyncConnection.connect(
        libpq_url(settings.sqlalchemy_url), autocommit=True
    )
    async with conn:
        yield conn


async def terminate(settings: Settings, backend_pids: list[int]) -> None:
    async with await psycopg.AsyncConnection.connect(
        libpq_url(settings.sqlalchemy_url), autocommit=True
    ) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (backend_pids,)
        )
        # Returns once the backends are gone, i.e. once their goodbyes have been sent.
        await admin.execute(
            "SELECT pg_sleep(0.05) FROM pg_stat_activity WHERE pid = ANY(%s)", (backend_pids,)
        )


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """Push the next descriptors above 1024, where select() can no longer watch them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        yield
    finally:
        for fd in padding:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_an_idle_healthy_connection_is_not_taken_for_closed(
    connection: psycopg.AsyncConnection[tuple[object, ...]],
) -> None:
    await connection.execute("SELECT 1")
    assert not closed_by_server(connection)


async def test_a_connection_the_server_terminated_is_taken_for_closed(
    settings: Settings, connection: psycopg.AsyncConnection[tuple[object, ...]]
) -> None:
    await terminate(settings, [connection.info.backend_pid])
    assert closed_by_server(connection)


@pytest.mark.usefixtures("many_descriptors")
async def test_descriptors_above_1024_are_watched_too(settings: Settings) -> None:
    conn = await psycopg.AsyncConnection.connect(
        libpq_url(settings.sqlalchemy_url), autocommit=True
    )
    async with conn:
        assert conn.fileno() > 1024
        assert not closed_by_server(conn)
        await terminate(settings, [conn.info.backend_pid])
        assert closed_by_server(conn)


async def test_every_pooled_connection_terminated_costs_no_request(
    api_app: FastAPI, settings: Settings
) -> None:
    resources: ApiResources = api_app.state.resources
    async with contextlib.AsyncExitStack() as held:
        # Open (or reuse) more connections than the pool keeps at minimum.
        for _ in range(HOT_POOL_MIN + 2):
            await held.enter_async_context(hot_connection(resources))
    async with await psycopg.AsyncConnection.connect(
        libpq_url(settings.sqlalchemy_url), autocommit=True
    ) as admin:
        rows = await admin.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = 'phonebridge-api' AND datname = current_database()"
        )
        pids = [pid for (pid,) in await rows.fetchall()]
    assert len(pids) >= HOT_POOL_MIN + 2
    await terminate(settings, pids)

    async with contextlib.AsyncExitStack() as held:
        for _ in range(HOT_POOL_MIN + 2):
            conn = await held.enter_async_context(hot_connection(resources))
            assert conn.info.backend_pid not in pids
            assert await (await conn.execute("SELECT 1 AS one")).fetchone() == {"one": 1}


async def test_every_intake_connection_terminated_costs_no_registration(
    api_app: FastAPI, settings: Settings, key: str
) -> None:
    resources: ApiResources = api_app.state.resources
    held_pids: list[int] = []
    async with contextlib.AsyncExitStack() as held:
        for _ in range(HOT_POOL_MIN + 2):
            conn = await held.enter_async_context(intake_connection(resources))
            held_pids.append(conn.get_server_pid())
    await terminate(settings, held_pids)

    async with asgi_client(api_app) as api:
        answers = await asyncio.gather(
            *(
                api.post("/v1/tasks", json={"task_id": f"T-after-{n}"}, headers=bearer(key))
                for n in range(HOT_POOL_MIN + 2)
            )
        )
    assert [answer.status_code for answer in answers] == [201] * (HOT_POOL_MIN + 2)
    async with contextlib.AsyncExitStack() as held:
        for _ in range(HOT_POOL_MIN + 2):
            conn = await held.enter_async_context(intake_connection(resources))
            assert conn.get_server_pid() not in held_pids


async def test_work_on_a_connection_lost_under_it_runs_again_on_another_a_few_times_at_most(
    api_app: FastAPI, settings: Settings
) -> None:
    resources: ApiResources = api_app.state.resources
    pids: list[int] = []

    def failing_first(times: int) -> Callable[[IntakeConnection], Awaitable[int]]:
        async def work(conn: IntakeConnection) -> int:
            pids.append(conn.get_server_pid())
            if len(pids) <= times:
                raise asyncpg.InternalClientError("cannot switch to state 11")
            return int(await conn.fetchval("SELECT 1"))

        return work

    assert await on_intake_connection(resources, failing_first(1)) == 1
    assert len(pids) == 2
    assert pids[0] != pids[1]
    # The connection the work failed on was closed, not lent again: its backend is gone.
    async with await psycopg.AsyncConnection.connect(
        libpq_url(settings.sqlalchemy_url), autocommit=True
    ) as admin:

        async def backend_gone() -> bool:
            found = await admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pids[0],)
            )
            row = await found.fetchone()
            return row is not None and row[0] == 0

        await wait_until_async(backend_gone, what="the failed connection's backend to end")

    pids.clear()
    with pytest.raises(asyncpg.InternalClientError):
        await on_intake_connection(resources, failing_first(INTAKE_ATTEMPTS))
    assert len(pids) == INTAKE_ATTEMPTS
