"""Reading request bodies ourselves, so every way a body can be broken (empty, not JSON, invalid
UTF-8, nested past orjson's depth limit, non-finite numbers) answers 422 with a reason."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from service.api.errors import invalid_input
from service.domain.jsontext import parse_json


async def read_json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        raise invalid_input("the request body is empty; a JSON object is expected")
    try:
        return parse_json(body)
    except orjson.JSONDecodeError as error:
        # orjson's message names the position and the fault, never the body's content.
        raise invalid_input(f"the request body is not valid JSON: {error}") from None
