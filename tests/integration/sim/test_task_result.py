"""POST /check/phone_number/task_result/o1 and the other upstream answers, over real HTTP."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from service.sim.scripts import PHONE_STATUSES
from service.sim.server import SimServer
from tests.support.upstream import API_ID, API_SECRET, SUBMIT, TASK_RESULT, poll

REQUEST_ID = re.compile(r"TID[0-9a-f]{32}")


def test_pending_answer_is_http_400_with_reason_and_request_id(upstream: httpx.Client) -> None:
    response = poll(upstream, "sim-ring-1")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {
        "status": "PENDING",
        "reason": "check in progress",
        "request_id": body["request_id"],
    }
    assert REQUEST_ID.fullmatch(body["request_id"])


def test_scripted_task_stays_pending_for_its_calls_then_finishes(upstream: httpx.Client) -> None:
    statuses = [poll(upstream, "sim-ring-3").json()["status"] for _ in range(5)]
    assert statuses == ["PENDING", "PENDING", "PENDING", "OK", "OK"]


@pytest.mark.parametrize("phone_status", PHONE_STATUSES)
def test_every_phone_status_comes_back_in_an_ok_answer(
    upstream: httpx.Client, phone_status: str
) -> None:
    response = poll(upstream, f"sim-{phone_status}-0")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "OK"
    assert body["result"]["phone_status"] == phone_status
    assert re.fullmatch(r"5[27]\d\d\*{8}", body["result"]["phone_number"])
    assert set(body) == {"status", "result", "request_id"}


def test_unknown_phone_status_value_is_passed_through(upstream: httpx.Client) -> None:
    assert poll(upstream, "sim-status_weird_value-1").json()["status"] == "PENDING"
    body = poll(upstream, "sim-status_weird_value-1").json()
    assert body["result"]["phone_status"] == "weird_value"


def test_registered_phone_number_comes_back_masked(sim: SimServer, upstream: httpx.Client) -> None:
    sim.control.register("T-mask", fate="busy", phone_number="525512345678")
    result = poll(upstream, "T-mask").json()["result"]
    assert result == {"phone_number": "5255********", "phone_status": "busy"}


@pytest.mark.parametrize("task_id", ["never-seen-task", "sim-invalid", "sim-nonsense-1"])
def test_unknown_or_invalid_task_answers_invalid_argument_not_found(
    upstream: httpx.Client, task_id: str
) -> None:
    response = poll(upstream, task_id)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "INVALID_ARGUMENT"
    assert body["reason"] == "argument 'task_id': not found"


@pytest.mark.parametrize("body", [b"{}", b"not json", b'{"task_id": 7}', b"[1]"])
def test_missing_task_id_answers_invalid_argument(upstream: httpx.Client, body: bytes) -> None:
    response = upstream.post(TASK_RESULT, content=body)
    assert response.status_code == 400
    assert response.json()["status"] == "INVALID_ARGUMENT"
    assert response.json()["reason"] == "argument 'task_id': missing"


def test_never_task_stays_pending(upstream: httpx.Client) -> None:
    assert {poll(upstream, "sim-never").json()["status"] for _ in range(6)} == {"PENDING"}


def test_invalid_task_answers_invalid_after_its_pending_calls(upstream: httpx.Client) -> None:
    statuses = [poll(upstream, "sim-invalid-1").json()["status"] for _ in range(2)]
    assert statuses == ["PENDING", "INVALID_ARGUMENT"]


def test_delayed_task_is_pending_until_its_delay_after_submission(
    sim: SimServer, upstream: httpx.Client
) -> None:
    now = time.time()
    sim.control.register("T-fresh", script="connected-2s", submitted_at=now)
    sim.control.register("T-old", script="connected-2s", submitted_at=now - 2.5)
    assert poll(upstream, "T-fresh").json()["status"] == "PENDING"
    assert poll(upstream, "T-old").json()["result"]["phone_status"] == "connected"


def test_delay_and_calls_must_both_pass(sim: SimServer, upstream: httpx.Client) -> None:
    sim.control.register("T-both", script="ring-2-1s", submitted_at=time.time() - 5)
    statuses = [poll(upstream, "T-both").json()["status"] for _ in range(3)]
    assert statuses == ["PENDING", "PENDING", "OK"]


def test_delay_in_the_task_id_counts_from_its_first_call(upstream: httpx.Client) -> None:
    assert poll(upstream, "sim-ring-150ms-a").json()["status"] == "PENDING"
    time.sleep(0.16)  # the delay itself is what is under test
    assert poll(upstream, "sim-ring-150ms-a").json()["status"] == "OK"


def test_task_past_its_validity_answers_not_found(sim: SimServer, upstream: httpx.Client) -> None:
    now = time.time()
    sim.control.register("T-expired", fate="ring", submitted_at=now - 86400.5)
    sim.control.register("T-just-valid", fate="ring", submitted_at=now - 86390)
    expired = poll(upstream, "T-expired").json()
    assert expired["status"] == "INVALID_ARGUMENT"
    assert expired["reason"] == "argument 'task_id': not found"
    assert poll(upstream, "T-just-valid").json()["status"] == "OK"
    assert sim.control.task("T-expired")["calls_after_expiry"] == 1
    assert sim.control.stats()["calls_after_expiry"] == 1


def test_finished_task_expires_too(sim: SimServer, upstream: httpx.Client) -> None:
    expires_at = sim.control.register("T-short", fate="ring", ttl_s=0.4)["expires_at"]
    assert poll(upstream, "T-short").json()["status"] == "OK"
    time.sleep(max(expires_at - time.time(), 0))  # waiting out the validity is under test
    assert poll(upstream, "T-short").json()["status"] == "INVALID_ARGUMENT"


def test_every_answer_has_its_own_request_id(upstream: httpx.Client) -> None:
    ids = [poll(upstream, "sim-never").json()["request_id"] for _ in range(20)]
    ids.append(upstream.get("/nowhere").json()["request_id"])
    assert len(set(ids)) == len(ids)
    assert all(REQUEST_ID.fullmatch(i) for i in ids)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/check/phone_number/o2"), ("GET", TASK_RESULT), ("POST", "/"), ("GET", "/_simx")],
)
def test_unknown_path_answers_not_found_in_upstream_format(
    upstream: httpx.Client, method: str, path: str
) -> None:
    response = upstream.request(method, path, json={"task_id": "sim-ring-0"})
    assert response.status_code == 404
    body = response.json()
    assert body["status"] == "NOT_FOUND"
    assert REQUEST_ID.fullmatch(body["request_id"])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-DF-API-ID": API_ID},
        {"X-DF-API-SECRET": API_SECRET},
        {"X-DF-API-ID": API_ID, "X-DF-API-SECRET": "wrong"},
        {"X-DF-API-ID": "wrong", "X-DF-API-SECRET": API_SECRET},
        {"X-DF-API-ID": API_ID, "X-DF-API-SECRET": API_SECRET + "x"},
    ],
)
def test_wrong_or_missing_credentials_answer_unauthorized(
    anonymous: httpx.Client, headers: dict[str, str]
) -> None:
    response = anonymous.post(TASK_RESULT, json={"task_id": "sim-ring-0"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["status"] == "UNAUTHORIZED"
    assert API_SECRET not in response.text


def test_unauthorized_calls_do_not_advance_a_script(
    sim: SimServer, upstream: httpx.Client, anonymous: httpx.Client
) -> None:
    anonymous.post(TASK_RESULT, json={"task_id": "sim-ring-1"})
    assert poll(upstream, "sim-ring-1").json()["status"] == "PENDING"
    assert sim.control.task("sim-ring-1")["answers"] == ["UNAUTHORIZED", "PENDING"]


def test_submitted_check_gets_a_task_id_that_can_be_polled(
    sim: SimServer, upstream: httpx.Client
) -> None:
    assert sim.control.config()["submit_script"] == "random"
    for _ in range(40):
        response = upstream.post(SUBMIT, json={"phone_number": "525512345678", "callback": "x"})
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "OK"
        if "result" in body:  # finished at once
            assert body["result"]["phone_number"] == "5255********"
            continue
        statuses = [poll(upstream, body["task_id"]).json() for _ in range(5)]
        final = [s for s in statuses if s["status"] == "OK"]
        assert final
        assert final[0]["result"]["phone_number"] == "5255********"
        assert final[0]["result"]["phone_status"] in PHONE_STATUSES


def test_submitted_task_ids_carry_their_script(sim: SimServer, upstream: httpx.Client) -> None:
    sim.control.configure(submit_script="turned_off-2")
    task_id = upstream.post(SUBMIT, json={"phone_number": "+573001234567"}).json()["task_id"]
    assert task_id.startswith("sim-turned_off-2-")
    statuses = [poll(upstream, task_id).json()["status"] for _ in range(3)]
    assert statuses == ["PENDING", "PENDING", "OK"]
    assert sim.control.task(task_id)["phone_number"] == "573001234567"


@pytest.mark.parametrize(
    ("body", "argument"),
    [
        ({}, "phone_number"),
        ({"phone_number": "abc"}, "phone_number"),
        ({"phone_number": 525512345678}, "phone_number"),
        ({"phone_number": "525512345678", "callback": 3}, "callback"),
    ],
)
def test_submit_with_bad_arguments_answers_invalid_argument(
    upstream: httpx.Client, body: dict[str, object], argument: str
) -> None:
    response = upstream.post(SUBMIT, json=body)
    assert response.status_code == 400
    assert response.json()["status"] == "INVALID_ARGUMENT"
    assert response.json()["reason"] == f"argument '{argument}': invalid"
