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

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.responses import Response

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


class RequestRoute(APIRoute):
    """The route of an endpoint that takes the Request alone and returns its Response (the
    intake routes): it is called directly. FastAPI's request handler would still, on every call,
    solve the endpoint's (empty) dependencies, check the endpoint's context and time each step
    for its telemetry: about a tenth of a registration's CPU, measured for issue 28. Errors raised
    by the endpoint reach the app's handlers as from any route; the OpenAPI schema is the same."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Any]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Any]] = self.endpoint
        return endpoint


RequestEndpoint = Callable[[Request], Coroutine[Any, Any, Response]]


def post_route(
    router: APIRouter, path: str, **options: Any
) -> Callable[[RequestEndpoint], RequestEndpoint]:
    """`@router.post(path, **options)` for an endpoint that takes the Request alone, served as
    a RequestRoute."""

    def add(endpoint: RequestEndpoint) -> RequestEndpoint:
        router.add_api_route(
            path, endpoint, methods=["POST"], route_class_override=RequestRoute, **options
        )
        return endpoint

    return add


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
    "RequestRoute",
    "ResourcesDep",
    "SessionDep",
    "SettingsDep",
    "post_route",
    "resources_and_client",
]
