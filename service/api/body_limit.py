"""The request body limit, as pure ASGI middleware so an oversized body is refused without being
read whole: a declared Content-Length over the limit is answered at once, and a chunked body is
counted as it streams and cut off when it passes the limit."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import problem_response

MAX_BODY_BYTES = 1024 * 1024


class RequestBodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodySizeLimit:
    """`limits_by_path`: a larger limit for the POSTs to these exact paths (a check job's list,
    16 MiB), enforced the same way. `answered_by_route`: paths whose route answers an oversized
    body itself (the portal's upload, with a page a person reads): there a declared size over the
    limit is raised at the route's first read of the body instead of answered here, before any
    byte of it is read."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = MAX_BODY_BYTES,
        limits_by_path: Mapping[str, int] | None = None,
        answered_by_route: Collection[str] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limits_by_path = dict(limits_by_path or {})
        self.answered_by_route = frozenset(answered_by_route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        if scope["method"] == "POST":
            limit = self.limits_by_path.get(scope["path"], limit)
        declared = _content_length(scope)
        declared_too_large = declared is not None and declared > limit
        if declared_too_large and scope["path"] not in self.answered_by_route:
            response = problem_response(413, RequestBodyTooLarge(limit).detail)
            await response(scope, receive, send)
            return

        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if declared_too_large:
                raise RequestBodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's read of the body, and answered as a 413 problem
                    # by the HTTPException handler.
                    raise RequestBodyTooLarge(limit)
            return message

        await self.app(scope, receive_within_limit, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
