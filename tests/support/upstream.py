"""The upstream simulator as the tests call it: the credentials phonebridge is configured with
in tests, and the two AccuAuth endpoints."""

from __future__ import annotations

import httpx

API_ID = "test-api-id"
API_SECRET = "test-api-secret-value"
SEED = 20261126
TASK_RESULT = "/check/phone_number/task_result/o1"
SUBMIT = "/check/phone_number/o1"


def poll(client: httpx.Client, task_id: str) -> httpx.Response:
    return client.post(TASK_RESULT, json={"task_id": task_id})
