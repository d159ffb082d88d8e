"""HEAD works wherever GET does, OPTIONS answers 204 with `Allow`, and `Allow` lists exactly the
methods that work on the path (issue 29, item 8; RFC 9110 sections 9.3.2, 9.3.7 and 10.2.1)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.api import bearer
from tests.support.factories import register_task


@pytest.mark.parametrize("path", ["/healthz", "/v1/tasks", "/v1/tasks/HEAD-1", "/v1/events"])
async def test_head_answers_as_get_does_without_a_body(
    api: httpx.AsyncClient, key: str, path: str
) -> None:
    await register_task(api, key, "HEAD-1")
    get = await api.get(path, headers=bearer(key))
    head = await api.head(path, headers=bearer(key))
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


async def test_head_of_a_missing_task_is_404_as_get_is(api: httpx.AsyncClient, key: str) -> None:
    head = await api.head("/v1/tasks/NO-SUCH-TASK", headers=bearer(key))
    assert head.status_code == 404
    assert head.content == b""


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/healthz", "GET, HEAD, OPTIONS"),
        ("/v1/tasks", "GET, HEAD, OPTIONS, POST"),
        ("/v1/tasks/T-1", "DELETE, GET, HEAD, OPTIONS"),
        # The batch route, and the task whose id is `batch` (a valid id): each works.
        ("/v1/tasks/batch", "DELETE, GET, HEAD, OPTIONS, POST"),
    ],
)
async def test_options_answers_204_with_the_methods_that_work(
    api: httpx.AsyncClient, path: str, allowed: str
) -> None:
    response = await api.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allowed
    assert response.content == b""


async def test_a_405_lists_in_allow_the_same_methods_as_options(
    api: httpx.AsyncClient, key: str
) -> None:
    refused = await api.put("/v1/tasks", headers=bearer(key))
    assert refused.status_code == 405
    assert refused.headers["allow"] == (await api.options("/v1/tasks")).headers["allow"]


async def test_options_of_a_path_with_no_route_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.options("/v1/nowhere")).status_code == 404


async def test_the_task_named_batch_is_read_and_deleted_as_allow_says(
    api: httpx.AsyncClient, key: str
) -> None:
    await register_task(api, key, "batch")
    assert (await api.get("/v1/tasks/batch", headers=bearer(key))).json()["task_id"] == "batch"
    assert (await api.delete("/v1/tasks/batch", headers=bearer(key))).status_code in (200, 204)
