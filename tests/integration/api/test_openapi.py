"""The published schema: /openapi.json and /docs, with the problem answers each route can give."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


async def schema(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_docs_page_is_served(api: httpx.AsyncClient) -> None:
    response = await api.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_every_asset_from_the_api_itself(
    api: httpx.AsyncClient, page: str
) -> None:
    # Offline (a laptop on a plane) a page that loads its script from a CDN stays blank.
    response = await api.get(page)
    assert response.status_code == 200
    html = response.text
    assert "://" not in html
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/"), asset
        loaded = await api.get(asset)
        assert loaded.status_code == 200, asset
        assert len(loaded.content) > 1000, asset


async def test_every_v1_operation_declares_its_problem_answers(api: httpx.AsyncClient) -> None:
    document = await schema(api)
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
    ]
    assert {(path, method) for path, method, _ in operations} >= {
        ("/v1/tasks", "post"),
        ("/v1/tasks/batch", "post"),
        ("/v1/tasks", "get"),
        ("/v1/tasks/{task_id}", "get"),
        ("/v1/tasks/{task_id}", "delete"),
        ("/v1/events", "get"),
        ("/v1/events/{event_id}", "get"),
    }
    for path, method, operation in operations:
        responses = operation["responses"]
        for status in ("401", "422", "503"):
            content = responses[status]["content"]
            assert content == {"application/problem+json": {"schema": PROBLEM_REF}}, (
                path,
                method,
                status,
            )
        assert operation["security"] == [{"ApiKey": []}]
    assert "404" in document["paths"]["/v1/tasks/{task_id}"]["get"]["responses"]
    assert "409" in document["paths"]["/v1/tasks/{task_id}"]["delete"]["responses"]
    assert "413" in document["paths"]["/v1/tasks"]["post"]["responses"]


async def test_referenced_schemas_are_defined(api: httpx.AsyncClient) -> None:
    document = await schema(api)
    defined = set(document["components"]["schemas"])
    assert {"Problem", "TaskRegistration", "TaskBatch", "TaskOut"} <= defined
    registration = document["components"]["schemas"]["TaskRegistration"]
    assert registration["additionalProperties"] is False
    assert registration["required"] == ["task_id"]
    body = document["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/TaskRegistration"}
    refs = _refs(document)
    assert {ref.rsplit("/", 1)[-1] for ref in refs} <= defined


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()
