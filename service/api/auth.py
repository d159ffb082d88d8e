"""Bearer authentication of every /v1 call.

The key is checked for shape first (no database work for junk), then found by its SHA-256 digest
and confirmed with a constant-time comparison. Recently confirmed digests are remembered for a
few seconds (see keycache.py). No message here ever contains the presented key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from service.accounts import api_key_digest, looks_like_api_key
from service.api.errors import ApiProblem
from service.api.resources import ApiResources, hot_connection, resources_of
from service.store.clients import find_active_key

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
    """The client of the active key with this SHA-256 digest; None when it is unknown or revoked.
    The portal checks its sessions' keys through this too, so revocation ends them alike."""
    client_id = resources.keys.client_id_for(digest)
    if client_id is not None:
        return AuthenticatedClient(client_id)
    async with hot_connection(resources) as conn:
        stored = await find_active_key(conn, digest)
    if stored is None or not hmac.compare_digest(stored.key_hash, digest):
        return None
    resources.keys.remember(digest, stored.client_id)
    return AuthenticatedClient(stored.client_id)


async def authenticated_client(request: Request) -> AuthenticatedClient:
    return await authenticate(resources_of(request), request.headers.get("authorization"))
