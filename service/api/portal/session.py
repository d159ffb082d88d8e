"""Who is signed in to the portal, and the rules every portal response follows.

A person signs in with an API key; the portal checks it through the API's own key lookup
(`client_of_key_digest`) and answers a sealed session cookie (HttpOnly, SameSite=Strict, Secure
unless a browser on this machine fetched the page over plain HTTP (cookie_is_secure), expiring after
PHONEBRIDGE_PORTAL_SESSION_S). Every page checks the session's key again the same way, so a
revoked key ends its sessions as it ends its API calls. Signing out remembers the session id in
Redis until the cookie would have expired, so a copy of the cookie is refused too.

Every form carries a CSRF token bound to its session (the sign-in form: to a nonce cookie), and
every portal response carries the security headers of PortalRoute.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import AuthenticatedClient, client_of_key_digest
from service.api.resources import ApiResources, resources_of
from service.domain.portal import (
    NONCE_BYTES,
    SESSION_ID_BYTES,
    SessionClaims,
    csrf_matches_any,
    csrf_token,
    open_session_under_any,
    seal_session,
    sign_in_nonce,
    sign_in_nonce_is_fresh,
)
from service.features.errors import FeatureError

PORTAL_PATH = "/portal"
SESSION_COOKIE = "pb_portal"
SIGN_IN_COOKIE = "pb_portal_sign_in"
SIGN_IN_NONCE_S = 600
SIGNED_OUT_KEY = "phonebridge:portal:signed-out:"
MAX_FORM_FIELDS = 50
# An upload's fields other than its file (a name, a number): far below a file's size.
UPLOAD_FIELD_MAX_BYTES = 64 * 1024

# No script may run (the portal has none), styles and images come from the portal itself, forms
# post only to it, and no other site may frame it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class SignInRequired(Exception):
    """No valid session: the answer is a redirect to the sign-in page."""


class PortalRefusal(Exception):
    """A request the portal refuses, answered as an HTML page with this status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PortalSession:
    client: AuthenticatedClient
    claims: SessionClaims
    csrf: str


def portal_key(resources: ApiResources) -> bytes:
    """The key that seals new sessions and CSRF tokens (the current secret's)."""
    return resources.portal_key


def portal_keys(resources: ApiResources) -> tuple[bytes, ...]:
    """The keys whose sessions and tokens are accepted: the current one, then a rotation's
    previous ones."""
    return resources.portal_keys


async def current_session(request: Request) -> PortalSession:
    resources = resources_of(request)
    claims = open_session_under_any(
        portal_keys(resources), request.cookies.get(SESSION_COOKIE, ""), time.time()
    )
    if claims is None:
        raise SignInRequired
    if await resources.redis.exists(SIGNED_OUT_KEY + claims.session_id):
        raise SignInRequired
    client = await client_of_key_digest(resources, claims.key_digest)
    if client is None or client.id != claims.client_id:
        raise SignInRequired
    return PortalSession(client, claims, csrf_token(portal_key(resources), claims.session_id))


PortalSessionDep = Annotated[PortalSession, Depends(current_session)]


async def form_fields(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the last value of a repeated one is kept, except that
    `all_values` reads repeats); refuses other bodies."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise PortalRefusal(415, "the portal takes its forms as application/x-www-form-urlencoded")
    parsed = _parse(await request.body())
    return {name: values[-1] for name, values in parsed.items()}


def _parse(body: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise PortalRefusal(400, f"the form could not be read: {error}") from None


async def all_values(request: Request, name: str) -> list[str]:
    return _parse(await request.body()).get(name, [])


async def read_form(request: Request, session: PortalSession) -> dict[str, str]:
    """The fields of a form posted within `session`, after its CSRF token is checked."""
    fields = await form_fields(request)
    _require_csrf(request, session, fields.get("csrf"))
    return fields


@asynccontextmanager
async def read_upload(
    request: Request, session: PortalSession, *, max_fields: int
) -> AsyncIterator[FormData]:
    """A multipart form (a file upload) posted within `session`, after its CSRF token is checked,
    read as it streams (BodySizeLimit counts its bytes; a file is spooled to disk past 1 MiB) and
    closed on leaving. At most one file and `max_fields` other fields, each of at most 64 KiB."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise PortalRefusal(415, "the portal takes an upload as multipart/form-data")
    try:
        form = await request.form(
            max_files=1, max_fields=max_fields, max_part_size=UPLOAD_FIELD_MAX_BYTES
        )
    except HTTPException as error:
        if error.status_code == 413:
            raise
        raise PortalRefusal(400, f"the upload could not be read: {error.detail}") from None
    try:
        csrf = form.get("csrf")
        _require_csrf(request, session, csrf if isinstance(csrf, str) else None)
        yield form
    finally:
        await form.close()


def _require_csrf(request: Request, session: PortalSession, presented: str | None) -> None:
    keys = portal_keys(resources_of(request))
    if not csrf_matches_any(keys, session.claims.session_id, presented):
        raise PortalRefusal(
            403, "this form has no valid CSRF token; reload the page and submit it again"
        )


def new_session(resources: ApiResources, client_id: int, key_digest: bytes) -> tuple[str, int]:
    """A sealed cookie value for a fresh session, and its lifetime in seconds."""
    lifetime = int(resources.settings.portal_session_s)
    claims = SessionClaims(
        client_id=client_id,
        key_digest=key_digest,
        session_id=secrets.token_hex(SESSION_ID_BYTES),
        expires_at=int(time.time()) + lifetime,
    )
    return seal_session(portal_key(resources), claims, secrets.token_bytes(NONCE_BYTES)), lifetime


async def end_session(resources: ApiResources, claims: SessionClaims) -> None:
    """Refuse this session from now on, until its cookie would have expired anyway."""
    remaining = max(1, claims.expires_at - int(time.time()))
    await resources.redis.set(SIGNED_OUT_KEY + claims.session_id, b"1", ex=remaining)


def sign_in_csrf(resources: ApiResources, nonce: str) -> str:
    return csrf_token(portal_key(resources), f"sign-in:{nonce}")


def new_sign_in_nonce(resources: ApiResources) -> str:
    return sign_in_nonce(resources.clock().timestamp(), secrets.token_hex(16))


def sign_in_csrf_matches(resources: ApiResources, nonce: str, presented: str | None) -> bool:
    """Whether a sign-in form's token is its nonce's, and the nonce was issued within
    SIGN_IN_NONCE_S: the pair expires on the server too, not only its cookie."""
    return sign_in_nonce_is_fresh(
        nonce, resources.clock().timestamp(), SIGN_IN_NONCE_S
    ) and csrf_matches_any(portal_keys(resources), f"sign-in:{nonce}", presented)


def cookie_is_secure(request: Request) -> bool:
    """Secure, unless a browser on this very machine fetched the page over plain HTTP (a laptop's
    demo, where a browser would never send a Secure cookie back).

    Decided from the connection: its scheme (TLS or not, as uvicorn saw it: forwarded headers are
    not applied) and its peer address. The request's headers may only make it Secure, never take
    it away: a Host of `127.0.0.1` is what a TLS proxy on the same machine passes by default
    (nginx's `proxy_pass`), so it counts only together with a loopback peer, and then any sign of
    HTTPS (the proxy's X-Forwarded-Proto or Forwarded, or the browser's Origin or Referer) keeps
    the cookie Secure."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    if not (_is_loopback(peer) and _is_loopback(request.url.hostname or "")):
        return True
    return _says_https(request)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _says_https(request: Request) -> bool:
    headers = request.headers
    forwarded = headers.get("forwarded", "").lower().replace(" ", "")
    return (
        headers.get("x-forwarded-proto", "").lower().split(",")[0].strip() == "https"
        or "proto=https" in forwarded
        or headers.get("origin", "").lower().startswith("https://")
        or headers.get("referer", "").lower().startswith("https://")
    )


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PORTAL_PATH,
        httponly=True,
        secure=cookie_is_secure(request),
        samesite="strict",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=PORTAL_PATH, httponly=True, secure=cookie_is_secure(request), samesite="strict"
    )


def see_other(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


RefusalPage = Callable[[Request, int, str], Response]
FeatureRefusalPage = Callable[[Request, FeatureError], Response]


class PortalRoute(APIRoute):
    """A portal route: a missing session redirects to sign-in, and a refusal renders as a page
    (the security headers are PortalSecurityHeaders', for every answer under the portal)."""

    refusal_page: RefusalPage | None = None
    feature_refusal_page: FeatureRefusalPage | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        refusal_page = type(self).refusal_page
        feature_refusal_page = type(self).feature_refusal_page

        async def portal_handler(request: Request) -> Response:
            try:
                response = await handle(request)
            except SignInRequired:
                response = see_other(f"{PORTAL_PATH}/sign-in")
                clear_cookie(request, response, SESSION_COOKIE)
            except PortalRefusal as refusal:
                assert refusal_page is not None
                response = refusal_page(request, refusal.status, refusal.detail)
            except FeatureError as error:
                assert feature_refusal_page is not None
                response = feature_refusal_page(request, error)
            except RequestValidationError as error:
                assert refusal_page is not None
                detail = "; ".join(
                    f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', '')}"
                    for e in error.errors()
                )
                response = refusal_page(request, 422, detail or "invalid input")
            return response

        return portal_handler


class PortalSecurityHeaders:
    """Every answer under PORTAL_PATH carries SECURITY_HEADERS: the pages, and also what no portal
    route answers (an unknown page's 404, a wrong method's 405)."""

    _HEADERS = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
    _NAMES = frozenset(name for name, _ in _HEADERS)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == PORTAL_PATH or path.startswith(f"{PORTAL_PATH}/")
        ):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (n, v) for n, v in message.get("headers", []) if n.lower() not in self._NAMES
                ]
                message = {**message, "headers": [*kept, *self._HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
