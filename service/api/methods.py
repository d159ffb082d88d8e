"""HEAD and OPTIONS as RFC 9110 has them, for every route: HEAD works wherever GET does (the GET
answer's status and headers, no body), OPTIONS answers 204 with `Allow`, and `Allow` (here and
on a 405) lists the methods that work on the path, read from the routes themselves.

A path can match several routes: `/v1/tasks/batch` is the batch route (POST) and also the task
whose id is `batch` (GET, DELETE), and each of those works, so `Allow` lists them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Asked of every route with a method that no route serves, to tell "path matches" from "no".
_PROBE_METHOD = "PROBE"


def allowed_methods(app: ASGIApp, scope: Scope) -> list[str]:
    """The methods some route of `app` serves on `scope`'s path (HEAD with GET, and OPTIONS
    whenever there is any); empty when no route matches the path."""
    router = getattr(app, "router", None)
    probe = {**scope, "type": "http", "method": _PROBE_METHOD}
    methods: set[str] = set()
    for route in _routes(getattr(router, "routes", [])):
        match, _ = route.matches(probe)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or {"GET"}
    if not methods:
        return []
    if "GET" in methods:
        methods.add("HEAD")
    methods.add("OPTIONS")
    return sorted(methods)


def _routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too: FastAPI keeps an included router as one entry
    that holds the router (`original_router`; create_app includes routers without a prefix, so
    their routes' paths are whole)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        else:
            yield route


class HeadAndOptions:
    """Outermost middleware: HEAD runs as GET with the body dropped (uvicorn would drop it too;
    in-process clients would not); OPTIONS is answered here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await self._options(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = allowed_methods(scope["app"], scope)  # Starlette puts the app in the scope
        if not allowed:
            await self.app(scope, receive, send)  # no such path: the app's 404
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(b"allow", ", ".join(allowed).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
