"""Bearer authentication of every /v1 call.

The key is checked for shape first (no database work for junk), then found by its SHA-256 digest
and confirmed with a constant-time comparison. Recently confirmed digests are remembered for a
few seconds (see keycache.py); when the key was last used is recorded at most once a minute
(keyusage.py). Then the call is counted against the client's limits (client_limits.py). No message
here ever contains the presented key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from fastapi import Request

from service.api.client_limits import PENDING_RECOUNT_S
from service.api.errors import ApiProblem
from service.api.resources import ApiResources, hot_connection, resources_of
from service.domain import problems
from service.domain.budgets import daily_check_limit
from service.domain.client_limits import ClientLimits, effective_limit, pending_headers
from service.features.keys import (
    api_key_digest,
    count_pending_tasks,
    find_active_key,
    looks_like_api_key,
    stamp_keys_used,
)

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
    return ApiProblem(
        401, detail, kind=problems.UNAUTHENTICATED, headers={"WWW-Authenticate": challenge}
    )


class SignInRefusal(StrEnum):
    NOT_A_KEY = "not-a-key"
    UNKNOWN_KEY = "unknown-key"
    THROTTLED = "throttled"


class SignInRefused(Exception):
    def __init__(self, reason: SignInRefusal, retry_after_s: int | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.retry_after_s = retry_after_s


async def sign_in(resources: ApiResources, key: str, source: str) -> AuthenticatedClient:
    """The client of a presented API key: the one rule of the API's bearer check and the portal's
    sign-in. A key that is not a valid one counts as a failed sign-in of `source` (the
    connection's address); past the limit (signins.py) the address is refused before its key is
    looked at. A key confirmed in the last few seconds (the key cache) skips that check, so valid
    traffic costs no Redis round trip, and a guesser cannot learn anything from it."""
    digest = api_key_digest(key) if looks_like_api_key(key) else None
    if digest is None or resources.keys.find(digest) is None:
        retry_after = await resources.sign_ins.retry_after(source)
        if retry_after is not None:
            raise SignInRefused(SignInRefusal.THROTTLED, retry_after)
    client = None if digest is None else await client_of_key_digest(resources, digest)
    if client is None:
        await resources.sign_ins.count_failure(source)
        raise SignInRefused(
            SignInRefusal.NOT_A_KEY if digest is None else SignInRefusal.UNKNOWN_KEY
        )
    return client


async def authenticate(
    resources: ApiResources, authorization: str | None, source: str
) -> AuthenticatedClient:
    if authorization is None:
        raise unauthorized(
            "this call needs an `Authorization: Bearer <api key>` header", invalid_token=False
        )
    scheme, _, key = authorization.strip().partition(" ")
    try:
        return await sign_in(resources, key.strip() if scheme.lower() == "bearer" else "", source)
    except SignInRefused as refused:
        if refused.reason is SignInRefusal.THROTTLED:
            raise ApiProblem(
                429,
                "too many invalid API keys from this address; retry after "
                f"{refused.retry_after_s} s",
                kind=problems.TOO_MANY_FAILED_SIGN_INS,
                headers={"Retry-After": str(refused.retry_after_s)},
            ) from None
        if refused.reason is SignInRefusal.NOT_A_KEY:
            raise unauthorized(
                "the Authorization header must be `Bearer <api key>` with a key from "
                "`phonebridge api-key create`",
                invalid_token=True,
            ) from None
        raise unauthorized(
            "the API key is not valid (unknown or revoked)", invalid_token=True
        ) from None


def source_of(request: Request) -> str:
    """The address a request came from: the connection's peer (no forwarded header counts)."""
    return request.client.host if request.client else "unknown"


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
            max_checks_per_day=daily_check_limit(
                stored.max_checks_per_day, settings.client_max_checks_per_day
            ),
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
                kind=problems.RATE_LIMITED,
                headers=headers,
            )
        return
    pending = await resources.limits.peek_pending(
        client.id, lambda client_id: count_pending(resources, client_id)
    )
    request.state.ratelimit_headers = pending_headers(limits.max_pending, pending)


class PendingRoom:
    """Room under a client's pending limit, as an async context manager: `wanted` new pending
    tasks are reserved on entry (429 when they do not all fit), the block sets `created` to the
    pending tasks it made, and whatever happens in it, the room it did not use (existing or
    rejected entries, an error) is given back on exit. Without a pending limit it does nothing
    at all: no Redis round trip, and not even a coroutine (issue 28)."""

    __slots__ = ("_client", "_request", "_resources", "_wanted", "created", "reserved")

    def __init__(
        self,
        resources: ApiResources,
        request: Request,
        client: AuthenticatedClient,
        wanted: int,
    ) -> None:
        self._resources = resources
        self._request = request
        self._client = client
        self._wanted = wanted
        self.reserved = 0
        self.created = 0

    async def __aenter__(self) -> PendingRoom:
        if self._client.limits.max_pending > 0:
            self.reserved = await _reserve_pending_room(
                self._resources, self._request, self._client, self._wanted
            )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.reserved > self.created:
            await self._resources.limits.release_pending(
                self._client.id, self.reserved - self.created
            )


def pending_room(
    resources: ApiResources, request: Request, client: AuthenticatedClient, wanted: int
) -> PendingRoom:
    """Room for `wanted` new pending tasks under the client's limit: `async with
    pending_room(...) as room:` (see PendingRoom)."""
    return PendingRoom(resources, request, client, wanted)


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
            f"this client may have {limit} pending {'task' if limit == 1 else 'tasks'}; "
            f"{room} more fit now and this call registers {wanted}; retry once some have "
            "finished",
            kind=problems.TOO_MANY_PENDING,
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
    client = await authenticate(resources, request.headers.get("authorization"), source_of(request))
    await admit(resources, request, client)
    return client
