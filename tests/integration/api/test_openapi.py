"""The published schema: /openapi.json and /docs, with the problem answers each route can give."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from service.api.app import ROUTERS
from service.domain.rechecks import AFTER_S_MAX, AFTER_S_MIN, MAX_MAX, MAX_MIN
from service.domain.verdicts import Verdict

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


# What a generated client calls its methods: short, unique, and changed only on purpose.
OPERATION_IDS = {
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("post", "/v1/tasks"): "register_task",
    ("get", "/v1/tasks"): "list_tasks",
    ("post", "/v1/tasks/batch"): "register_batch",
    ("get", "/v1/tasks/{task_id}"): "get_task",
    ("delete", "/v1/tasks/{task_id}"): "cancel_task",
    ("get", "/v1/events"): "list_events",
    ("get", "/v1/events/{event_id}"): "get_event",
    ("get", "/v1/events/{event_id}/deliveries"): "list_deliveries",
    ("post", "/v1/check-jobs"): "create_check_job",
    ("get", "/v1/check-jobs"): "list_check_jobs",
    ("get", "/v1/check-jobs/{job_id}"): "get_check_job",
    ("post", "/v1/check-jobs/{job_id}/start"): "start_check_job",
    ("post", "/v1/check-jobs/{job_id}/pause"): "pause_check_job",
    ("post", "/v1/check-jobs/{job_id}/resume"): "resume_check_job",
    ("post", "/v1/check-jobs/{job_id}/cancel"): "cancel_check_job",
    ("get", "/v1/check-jobs/{job_id}/rejections"): "list_check_job_rejections",
    ("get", "/v1/check-jobs/{job_id}/results"): "list_check_job_results",
    ("post", "/v1/events/{event_id}/redeliver"): "redeliver",
    ("post", "/v1/subscriptions"): "create_subscription",
    ("get", "/v1/subscriptions"): "list_subscriptions",
    ("get", "/v1/subscriptions/{subscription_id}"): "get_subscription",
    ("patch", "/v1/subscriptions/{subscription_id}"): "change_subscription",
    ("delete", "/v1/subscriptions/{subscription_id}"): "delete_subscription",
    ("get", "/v1/subscriptions/{subscription_id}/health"): "get_subscription_health",
    ("get", "/v1/subscriptions/{subscription_id}/secret"): "get_secret",
    ("post", "/v1/subscriptions/{subscription_id}/rotate-secret"): "rotate_secret",
    ("post", "/v1/subscriptions/{subscription_id}/recover"): "recover_subscription",
    ("get", "/v1/stats/completion-times"): "get_completion_times",
    ("post", "/v1/checks"): "submit_check",
    ("get", "/v1/callback-url"): "callback_url",
    ("get", "/hooks/accuauth/{token}"): "accuauth_callback",
}


async def test_operation_ids_are_the_short_stable_names(api: httpx.AsyncClient) -> None:
    document = await schema(api)
    published = {
        (method, path): operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert published == OPERATION_IDS
    assert len(set(published.values())) == len(published)


def answers_a_route_can_give(route: APIRoute) -> set[str]:
    """The statuses phonebridge's machinery can answer on this route whatever its handler does:
    authentication and its throttle, client limits, an unavailable database, a body too large
    or not JSON, input that fails validation, an id that names nothing."""
    statuses: set[str] = set()
    dependant = route.dependant
    if route.path.startswith("/v1/"):
        statuses |= {"401", "429", "503"}
        if dependant.path_params:
            statuses.add("404")
    if route.body_field is not None:
        statuses |= {"413", "415", "422"}
    if dependant.path_params or dependant.query_params or dependant.header_params:
        statuses.add("422")
    return statuses


async def test_every_status_a_route_can_answer_is_declared(api: httpx.AsyncClient) -> None:
    document = await schema(api)
    routes = [
        route
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
    ]
    assert len(routes) == len(OPERATION_IDS)
    for route in routes:
        for method in route.methods or ():
            declared = set(document["paths"][route.path][method.lower()]["responses"])
            missing = answers_a_route_can_give(route) - declared
            assert not missing, (method, route.path, missing)


async def test_health_answers_have_real_schemas(api: httpx.AsyncClient) -> None:
    document = await schema(api)
    for path in ("/healthz", "/readyz"):
        content = document["paths"][path]["get"]["responses"]["200"]["content"]
        assert content["application/json"]["schema"].get("$ref"), path


async def test_the_check_and_the_task_publish_their_rechecks(api: httpx.AsyncClient) -> None:
    schemas = (await schema(api))["components"]["schemas"]
    recheck = schemas["RecheckIn"]
    assert recheck["additionalProperties"] is False
    assert recheck["properties"]["after_s"]["minimum"] == AFTER_S_MIN
    assert recheck["properties"]["after_s"]["maximum"] == AFTER_S_MAX
    assert (recheck["properties"]["max"]["minimum"], recheck["properties"]["max"]["maximum"]) == (
        MAX_MIN,
        MAX_MAX,
    )
    verdicts = schemas[recheck["properties"]["verdicts"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert verdicts["enum"] == [verdict.value for verdict in Verdict]
    check = schemas["CheckSubmission"]["properties"]["recheck"]
    assert {"$ref": "#/components/schemas/RecheckIn"} in check["anyOf"]
    rechecks = schemas["TaskOut"]["properties"]["rechecks"]
    assert rechecks["items"] == {"$ref": "#/components/schemas/RecheckAnswer"}
    assert set(schemas["RecheckAnswer"]["required"]) == {"task_id", "phone_status", "at"}


async def test_a_result_declares_its_verdict_with_every_value_it_can_take(
    api: httpx.AsyncClient,
) -> None:
    schemas = (await schema(api))["components"]["schemas"]
    result = schemas["TaskResult"]
    assert result["required"] == ["phone_number", "phone_status", "verdict"]
    verdict = result["properties"]["verdict"]
    assert verdict["anyOf"] == [{"$ref": "#/components/schemas/Verdict"}, {"type": "null"}]
    assert (
        "null when `phone_status` is a value upstream does not document" in (verdict["description"])
    )
    assert schemas["Verdict"]["enum"] == ["live", "unreachable", "dead", "retry"]
    assert schemas["TaskOut"]["properties"]["result"]["anyOf"][0] == {
        "$ref": "#/components/schemas/TaskResult"
    }
