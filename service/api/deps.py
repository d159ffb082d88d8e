"""The dependencies routes declare: `client: ClientDep`, `conn: AutocommitDep`,
`session: SessionDep`, `redis: RedisDep`, `settings: SettingsDep`, `resources: ResourcesDep`.

- `SessionDep` is a unit of work: it commits when the route function returns, before the response
  is sent (so a client never sees a 2xx for work that then fails to commit), and rolls back on an
  exception. Services never commit; this boundary does.
- `AutocommitDep` is a connection on which each statement commits on its own, for routes whose
  work is a single statement (a read, one INSERT ... ON CONFLICT, one UPDATE ... RETURNING): it
  saves the BEGIN and COMMIT round trips on the hot path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.api.auth import (
    AuthenticatedClient,
    admit,
    authenticate,
    authenticated_client,
    source_of,
)
from service.api.resources import ApiResources, get_resources, resources_of
from service.config import Settings

if TYPE_CHECKING:
    RedisClient = Redis[Any]
else:  # redis.asyncio.Redis is generic only in its type stubs
    RedisClient = Redis

# Dependencies are async even when they do not await: FastAPI runs a plain `def` dependency in a
# worker thread, a hop that costs more than the dependency itself.


async def _settings(request: Request) -> Settings:
    return resources_of(request).settings


# Annotated with RedisClient, not Redis[Any]: FastAPI evaluates a dependency's annotations at run
# time, where Redis[Any] is a TypeError (a route declaring RedisDep could not be registered).
async def _redis(request: Request) -> RedisClient:
    return resources_of(request).redis


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with resources_of(request).sessions() as session, session.begin():
        yield session


async def _autocommit_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with resources_of(request).autocommit_engine.connect() as conn:
        yield conn


async def resources_and_client(request: Request) -> tuple[ApiResources, AuthenticatedClient]:
    """What `ResourcesDep` and `ClientDep` give, for the intake routes, which call this directly:
    FastAPI's dependency solving measured about 150 us of CPU per request on this machine, a fifth
    of what a single-task registration costs. Other routes declare the dependencies."""
    resources = resources_of(request)
    client = await authenticate(resources, request.headers.get("authorization"), source_of(request))
    await admit(resources, request, client)
    return resources, client


ResourcesDep = Annotated[ApiResources, Depends(get_resources)]
SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[RedisClient, Depends(_redis)]
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
AutocommitDep = Annotated[AsyncConnection, Depends(_autocommit_connection, scope="function")]
ClientDep = Annotated[AuthenticatedClient, Depends(authenticated_client)]

__all__ = [
    "AuthenticatedClient",
    "AutocommitDep",
    "ClientDep",
    "RedisClient",
    "RedisDep",
    "ResourcesDep",
    "SessionDep",
    "SettingsDep",
    "resources_and_client",
]
