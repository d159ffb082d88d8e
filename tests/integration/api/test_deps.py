"""The dependencies routes declare (service/api/deps.py), on routes of a small app of the test's
own sharing the run's API resources: `SessionDep` commits before the answer is sent and rolls
back when the route raises; `AutocommitDep` commits each statement on its own; `ClientDep` and
`resources_and_client` authenticate and count the call against the client's limits;
`SettingsDep` and `RedisDep` are the process's own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.deps import (
    AutocommitDep,
    ClientDep,
    RedisDep,
    ResourcesDep,
    SessionDep,
    SettingsDep,
    resources_and_client,
)
from service.api.errors import ApiProblem, install_error_handlers
from service.config import Settings
from tests.support.api import asgi_client, bearer
from tests.support.factories import limited_key


@pytest.fixture
async def table(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    """A table of the test's own, for rows the routes write."""
    name = f"deps_probe_{secrets.token_hex(4)}"
    async with sessions() as session, session.begin():
        await session.execute(text(f"CREATE TABLE {name} (note text NOT NULL)"))
    yield name
    async with sessions() as session, session.begin():
        await session.execute(text(f"DROP TABLE {name}"))


@pytest.fixture
async def probe(api_app: FastAPI, table: str) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.resources = api_app.state.resources
    install_error_handlers(app)
    insert = text(f"INSERT INTO {table} (note) VALUES (:note)")  # noqa: S608 - the test's table

    @app.post("/session/{note}")
    async def write_in_a_session(note: str, session: SessionDep, fail: bool = False) -> str:
        await session.execute(insert, {"note": note})
        if fail:
            raise ApiProblem(409, "the route failed after writing")
        return note

    @app.post("/autocommit/{note}")
    async def write_autocommitted(note: str, conn: AutocommitDep, fail: bool = False) -> str:
        await conn.execute(insert, {"note": note})
        if fail:
            raise ApiProblem(409, "the route failed after writing")
        return note

    @app.get("/who")
    async def who(
        client: ClientDep, settings: SettingsDep, resources: ResourcesDep
    ) -> dict[str, object]:
        return {"client": client.id, "same_settings": settings is resources.settings}

    @app.get("/redis")
    async def redis_answers(redis: RedisDep, resources: ResourcesDep) -> bool:
        return redis is resources.redis and bool(await redis.ping())

    @app.get("/intake")
    async def intake(request: Request) -> int:
        _, client = await resources_and_client(request)
        return client.id

    async with asgi_client(app) as client:
        yield client


async def notes(sessions: async_sessionmaker[AsyncSession], table: str) -> list[str]:
    async with sessions() as session:
        found = await session.execute(text(f"SELECT note FROM {table} ORDER BY note"))  # noqa: S608
        return list(found.scalars())


async def test_a_session_commits_before_the_answer_is_sent(
    probe: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], table: str
) -> None:
    answered = await probe.post("/session/kept")

    assert answered.status_code == 200
    assert await notes(sessions, table) == ["kept"]


async def test_a_session_rolls_back_what_a_failing_route_wrote(
    probe: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], table: str
) -> None:
    answered = await probe.post("/session/lost", params={"fail": "true"})

    assert answered.status_code == 409
    assert answered.headers["content-type"].startswith("application/problem+json")
    assert await notes(sessions, table) == []


async def test_an_autocommit_connection_commits_each_statement_on_its_own(
    probe: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], table: str
) -> None:
    kept = await probe.post("/autocommit/first")
    failed = await probe.post("/autocommit/second", params={"fail": "true"})

    assert (kept.status_code, failed.status_code) == (200, 409)
    # The statement before the failure had committed already: nothing to roll back.
    assert await notes(sessions, table) == ["first", "second"]


async def test_a_client_dependency_needs_a_valid_key(probe: httpx.AsyncClient, key: str) -> None:
    without = await probe.get("/who")
    wrong = await probe.get("/who", headers=bearer(key[:-2] + "xx"))
    signed_in = await probe.get("/who", headers=bearer(key))

    assert (without.status_code, wrong.status_code) == (401, 401)
    assert signed_in.status_code == 200
    assert signed_in.json()["same_settings"] is True
    assert isinstance(signed_in.json()["client"], int)


async def test_redis_is_the_processs_own_client(probe: httpx.AsyncClient) -> None:
    answered = await probe.get("/redis")

    assert answered.json() is True


@pytest.mark.usefixtures("flush_redis")
@pytest.mark.parametrize("path", ["/who", "/intake"])
async def test_a_call_past_the_clients_rate_is_refused_by_either_way_in(
    probe: httpx.AsyncClient, settings: Settings, path: str
) -> None:
    key, _ = await limited_key(settings, max_rps=2)

    statuses = [(await probe.get(path, headers=bearer(key))).status_code for _ in range(7)]

    # Limits count calls per second of the clock: seven calls within two seconds (three windows
    # at most, even on a busy machine) cannot all fit under two a second.
    assert statuses[:2] == [200, 200]
    assert 429 in statuses


async def test_intake_authenticates_like_the_declared_dependency(
    probe: httpx.AsyncClient, key: str
) -> None:
    declared = await probe.get("/who", headers=bearer(key))
    direct = await probe.get("/intake", headers=bearer(key))

    assert (await probe.get("/intake")).status_code == 401
    assert direct.json() == declared.json()["client"]
