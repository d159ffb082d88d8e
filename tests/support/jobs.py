"""Check jobs as the tests make them: numbers, CSV bodies, and the REST calls."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.api import bearer


def mx_number(index: int) -> str:
    """A possible Mexico City number, distinct for each index below 10**8."""
    return f"+52 55 {index:08d}"


def csv_body(rows: list[tuple[str, str]], header: str = "phone_number,reference") -> bytes:
    lines = [header] + [f"{number},{reference}" for number, reference in rows]
    return ("\r\n".join(lines) + "\r\n").encode()


async def create_json_job(
    api: httpx.AsyncClient, key: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await api.post("/v1/check-jobs", json=body, headers={**bearer(key), **headers})


async def create_csv_job(
    api: httpx.AsyncClient, key: str, body: bytes, query: str = "", **headers: str
) -> httpx.Response:
    return await api.post(
        f"/v1/check-jobs{query}",
        content=body,
        headers={**bearer(key), "Content-Type": "text/csv", **headers},
    )


async def job_move(api: httpx.AsyncClient, key: str, job_id: str, move: str) -> httpx.Response:
    return await api.post(f"/v1/check-jobs/{job_id}/{move}", headers=bearer(key))


async def get_job(api: httpx.AsyncClient, key: str, job_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/check-jobs/{job_id}", headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def all_results(api: httpx.AsyncClient, key: str, job_id: str) -> list[dict[str, Any]]:
    """Every result row, page after page."""
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        response = await api.get(
            f"/v1/check-jobs/{job_id}/results?limit=2{cursor}", headers=bearer(key)
        )
        assert response.status_code == 200, response.text
        page = response.json()
        rows += page["data"]
        if page["next_cursor"] is None:
            return rows
        cursor = f"&cursor={page['next_cursor']}"
