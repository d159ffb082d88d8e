"""Reading JSON request bodies, one way for every /v1 route: a body comes as `application/json`
(or `+json`; else 415), and every way it can be broken (empty, not JSON, invalid UTF-8, nested past
orjson's depth limit, non-finite numbers, a key repeated in one object) answers 422 with a reason.

The intake routes read their bodies with read_json_body; the routes whose body is a pydantic model
are JsonBodyRoutes, whose requests parse their JSON the same way (FastAPI calls `request.json()`).
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from service.api.errors import ApiProblem, invalid_input
from service.domain import problems
from service.domain.jsontext import RepeatedKey, parse_request_json


async def read_json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        raise invalid_input("the request body is empty; a JSON object is expected")
    require_json_content_type(request)
    return parse_body(body)


def parse_body(body: bytes) -> Any:
    try:
        return parse_request_json(body)
    except orjson.JSONDecodeError as error:
        # orjson's message names the position and the fault, never the body's content.
        raise invalid_input(f"the request body is not valid JSON: {error}") from None
    except RepeatedKey as repeated:
        shown = repeated.key if len(repeated.key) <= 64 else repeated.key[:64] + "..."
        raise invalid_input(
            f"the request body names the key {shown!r} twice in one object"
        ) from None


def require_json_content_type(request: Request) -> None:
    """415 unless the request says its body is JSON."""
    declared = request.headers.get("content-type")
    if declared == "application/json":
        return  # what nearly every client sends, without building a MIME message to parse it
    if declared is not None:
        message = email.message.Message()
        message["content-type"] = declared
        subtype = message.get_content_subtype()
        if message.get_content_maintype() == "application" and (
            subtype == "json" or subtype.endswith("+json")
        ):
            return
    raise ApiProblem(
        415,
        "the request body must be JSON, sent with `Content-Type: application/json`",
        kind=problems.UNSUPPORTED_MEDIA_TYPE,
    )


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length.strip() not in ("", "0")) or (
        "transfer-encoding" in request.headers
    )


class JsonBodyRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_body(await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    """A route whose body is a pydantic model, read as read_json_body reads one: 415 for a body
    that is not JSON (FastAPI would hand the model the raw bytes and answer 422), 422 for a key
    named twice (FastAPI's parser would keep the last)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def json_body_handler(request: Request) -> Response:
            if _has_body(request):
                require_json_content_type(request)
            return await handle(JsonBodyRequest(request.scope, request.receive))

        return json_body_handler
