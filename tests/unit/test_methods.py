"""HEAD and OPTIONS for every route (service/api/methods.py), on a small app of the test's own."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.api.methods import HeadAndOptions


async def read(request: Request) -> Response:
    return PlainTextResponse("the things", headers={"x-count": "2"})


async def write(request: Request) -> Response:
    return PlainTextResponse("made", status_code=201)


APP = Starlette(
    routes=[Route("/things", read, methods=["GET"]), Route("/things", write, methods=["POST"])],
    middleware=[Middleware(HeadAndOptions)],
)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://test")


async def test_options_answers_204_allowing_the_methods_of_every_matching_route() -> None:
    async with client() as http:
        response = await http.options("/things")

    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert response.status_code == 204
    assert {"GET", "HEAD", "POST"} <= allowed
    assert "DELETE" not in allowed


async def test_head_answers_as_get_without_the_body() -> None:
    async with client() as http:
        head = await http.head("/things")
        get = await http.get("/things")

    assert (head.status_code, head.headers["x-count"]) == (get.status_code, "2")
    assert head.content == b""
    assert get.content == b"the things"


async def test_options_on_a_path_nothing_serves_is_the_apps_404() -> None:
    async with client() as http:
        response = await http.options("/nothing")

    assert response.status_code == 404
