"""Bearer authentication of every /v1 call.

The key is checked for shape first (no database work for junk), then found by its SHA-256 digest
and confirmed with a constant-time comparison. Recently confirmed digests are remembered for a
few seconds (see keycache.py); when the key was last used is recorded at most once a minute
(keyusage.py). Then the call is counted against the client's limits (clientlimits.py). No message
here ever contains the presented key.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import Request

from service.accounts import api_key_digest, looks_like_api_key
from service.api.clientlimits import PENDING_RECOUNT_S
from service.api.errors import ApiProblem
from service.api.resources import ApiResources, hot_connection, resources_of
from service.domain.limits import ClientLimits, effective_limit, pending_headers
from service.store.clients import count_pending_tasks, find_active_key, stamp_keys_used

# The scheme as the OpenAPI schema declares it for every /v1 operation (see app.py): the
# "Authorize" button of /docs. It is declared there rather than through FastAPI's HTTPBearer
# dependency, which would add a dependency resolution to every request for no check of its own.
SECURITY_SCHEME_NAME = "ApiKey"
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "`Authorization: Bearer pbk_...`, a key from `phonebridge api-key create`.",
}


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    id: int
    key_id: int = 0
    limits: ClientLimits = field(default_factory=ClientLimits)


def unauthorized(detail: str, *, invalid_token: bool) -> ApiProblem:
    challenge = 'Bearer realm="phonebridge"'
    if invalid_token:
        challenge += ', error="invalid_token"'
    return ApiProblem(401, detail, kind="unauthenticated", headers={"WWW-Authenticate": challenge})


async def authenticate(resources: ApiResources, authorization: str | None) -> AuthenticatedClient:
    if authorization is None:
        raise unauthorized(
            "this call needs an `Authorization: Bearer <api key>` header", invalid_token=False
        )
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not looks_like_api_key(key):
        raise unauthorized(
            "the Authorization header must be `Bearer <api key>` with a key from "
            "`phonebridge api-key create`",
            invalid_token=True,
        )
    client = await client_of_key_digest(resources, api_key_digest(key))
    if client is None:
        raise unauthorized("the API key is not valid (unknown or revoked)", invalid_token=True)
    return client


async def client_of_key_digest(
    resources: ApiResources, digest: bytes
) -> AuthenticatedClient | None:
    """The client of the active key with this SHA-256 digest, with the limits in force for it;
    None when the key is unknown or revoked. The portal checks its sessions' keys through this
    too, so revocation ends them alike and their use stamps `last_used_at`."""
    stored = resources.keys.find(digest)
    if stored is None:
        async with hot_connection(resources) as conn:
            found = await find_active_key(conn, digest)
        if found is None or not hmac.compare_digest(found.key_hash, digest):
            return None
        resources.keys.remember(digest, found)
        stored = found
    if resources.key_usage.due(stored.key_id):
        resources.key_usage.spawn(_stamp_last_used(resources, stored.key_id))
    settings = resources.settings
    return AuthenticatedClient(
        stored.client_id,
        stored.key_id,
        ClientLimits(
            max_rps=effective_limit(stored.max_rps, settings.client_max_rps),
            max_pending=effective_limit(stored.max_pending, settings.client_max_pending),
        ),
    )


async def admit(resources: ApiResources, request: Request, client: AuthenticatedClient) -> None:
    """Count the call against the client's limits; 429 above its rate. While a limit is on, the
    RateLimit headers of the answer are left in the request's state (see RateLimitHeaders)."""
    limits = client.limits
    if not limits.any_on:
        return
    if limits.max_rps > 0:
        verdict = await resources.limits.count_call(client.id, limits.max_rps)
        headers = verdict.headers()
        request.state.ratelimit_headers = headers
        if not verdict.allowed:
            raise ApiProblem(
                429,
                f"this client may make {limits.max_rps} calls a second; "
                f"retry after {verdict.reset_s} s",
                kind="rate-limited",
                headers=headers,
            )
        return
    pending = await resources.limits.peek_pending(
        client.id, lambda client_id: count_pending(resources, client_id)
    )
    request.state.ratelimit_headers = pending_headers(limits.max_pending, pending)


@dataclass
class PendingRoom:
    """Room reserved under a client's pending limit; the block sets `created` to the pending
    tasks it made, and the rest is handed back when it ends."""

    reserved: int
    created: int = 0


@asynccontextmanager
async def pending_room(
    resources: ApiResources, request: Request, client: AuthenticatedClient, wanted: int
) -> AsyncIterator[PendingRoom]:
    """Room for `wanted` new pending tasks under the client's limit (429 when they do not all
    fit), taken before the block and, whatever happens in it, given back where the block did not
    use it (existing or rejected entries, an error)."""
    room = PendingRoom(await _reserve_pending_room(resources, request, client, wanted))
    try:
        yield room
    finally:
        await resources.limits.release_pending(client.id, room.reserved - room.created)


async def _reserve_pending_room(
    resources: ApiResources, request: Request, client: AuthenticatedClient, wanted: int
) -> int:
    """Reserve room for `wanted` new pending tasks under the client's limit (429 when they do
    not all fit); returns how many were reserved (0 without a limit)."""
    limit = client.limits.max_pending
    if limit <= 0 or wanted <= 0:
        return 0
    room = await resources.limits.reserve_pending(
        client.id, wanted, limit, lambda client_id: count_pending(resources, client_id)
    )
    if client.limits.max_rps <= 0:
        request.state.ratelimit_headers = pending_headers(
            limit, limit - room + (wanted if wanted <= room else 0)
        )
    if wanted > room:
        raise ApiProblem(
            429,
            f"this client may have {limit} pending tasks; {room} more fit now and this call "
            f"registers {wanted}; retry once some have finished",
            kind="too-many-pending",
            headers={"Retry-After": str(PENDING_RECOUNT_S)},
        )
    return wanted


async def _stamp_last_used(resources: ApiResources, key_id: int) -> None:
    now = resources.clock()
    async with hot_connection(resources) as conn:
        await stamp_keys_used(
            conn, [key_id], now, now - timedelta(seconds=resources.key_usage.interval_s)
        )


async def count_pending(resources: ApiResources, client_id: int) -> int:
    async with hot_connection(resources) as conn:
        return await count_pending_tasks(conn, client_id)


async def authenticated_client(request: Request) -> AuthenticatedClient:
    resources = resources_of(request)
    client = await authenticate(resources, request.headers.get("authorization"))
    await admit(resources, request, client)
    return client
