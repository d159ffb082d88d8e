"""Fault injection over real HTTP: every mode, forced or drawn, and the enforced rate limit."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from service.sim.calls import Endpoint
from service.sim.faults import FaultMode
from service.sim.server import SimServer
from service.sim.state import SimOptions, SimState
from tests.support.upstream import API_ID, API_SECRET, TASK_RESULT, poll


@pytest.mark.parametrize(
    ("mode", "http_status", "status"),
    [
        ("internal_error", 500, "INTERNAL_ERROR"),
        ("unauthorized", 401, "UNAUTHORIZED"),
        ("key_expired", 401, "KEY_EXPIRED"),
        ("no_permission", 403, "NO_PERMISSION"),
        ("out_of_quota", 403, "OUT_OF_QUOTA"),
        ("rate_limit", 403, "RATE_LIMIT_EXCEEDED"),
        ("not_found", 404, "NOT_FOUND"),
        ("pending_200", 200, "PENDING"),
    ],
)
def test_forced_error_answers_have_upstream_shape(
    sim: SimServer, upstream: httpx.Client, mode: str, http_status: int, status: str
) -> None:
    sim.control.force(mode, calls=1)
    response = poll(upstream, "sim-ring-0")
    assert response.status_code == http_status
    body = response.json()
    assert body["status"] == status
    assert body["request_id"].startswith("TID")
    assert isinstance(body["reason"], str)
    # The fault was spent; the task itself is untouched by it.
    assert poll(upstream, "sim-ring-0").json()["status"] == "OK"


def test_unknown_status_fault_answers_a_status_nobody_documented(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.force("unknown_status", calls=1)
    body = poll(upstream, "sim-ring-0").json()
    documented = {"OK", "PENDING", "INVALID_ARGUMENT", "UNAUTHORIZED", "KEY_EXPIRED"}
    assert body["status"] not in documented | {"NO_PERMISSION", "OUT_OF_QUOTA", "NOT_FOUND"}


def test_garbage_fault_answers_a_body_that_is_not_json(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.force("garbage", calls=1)
    response = poll(upstream, "sim-ring-0")
    assert response.status_code == 200
    assert response.content
    # Neither UTF-8 nor JSON: both decoding errors are ValueErrors.
    with pytest.raises(ValueError):  # noqa: PT011
        response.json()


def test_html_fault_answers_a_proxy_error_page(sim: SimServer, upstream: httpx.Client) -> None:
    sim.control.force("html", calls=1)
    response = poll(upstream, "sim-ring-0")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text


def test_empty_fault_answers_an_empty_body(sim: SimServer, upstream: httpx.Client) -> None:
    sim.control.force("empty", calls=1)
    response = poll(upstream, "sim-ring-0")
    assert response.status_code == 200
    assert response.content == b""


def test_reset_fault_closes_the_connection_with_an_rst(sim: SimServer) -> None:
    sim.control.force("reset", calls=1)
    host, port = sim.base_url.removeprefix("http://").split(":")
    body = b'{"task_id": "sim-ring-0"}'
    request = (
        f"POST {TASK_RESULT} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-DF-API-ID: {API_ID}\r\nX-DF-API-SECRET: {API_SECRET}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(request)
        with pytest.raises(ConnectionResetError):
            conn.recv(1024)
    assert sim.control.task("sim-ring-0")["answers"] == ["reset"]


def test_reset_fault_surfaces_as_a_transport_error_in_httpx(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.force("reset", calls=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        poll(upstream, "sim-ring-0")
    assert poll(upstream, "sim-ring-0").json()["status"] == "OK"


def test_slow_fault_trips_a_client_timeout(sim: SimServer, upstream: httpx.Client) -> None:
    sim.control.set_faults(slow_s=5.0, force={"mode": "slow", "calls": 1})
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        upstream.post(TASK_RESULT, json={"task_id": "sim-ring-0"}, timeout=0.2)
    assert time.monotonic() - started < 2.0
    assert sim.control.task("sim-ring-0")["answers"] == ["slow:OK"]


def test_slow_fault_answers_normally_after_its_delay(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.set_faults(slow_s=0.15, force={"mode": "slow", "calls": 1})
    started = time.monotonic()
    response = poll(upstream, "sim-busy-0")
    assert time.monotonic() - started >= 0.15
    assert response.json()["result"]["phone_status"] == "busy"


@pytest.mark.parametrize(
    ("task_id", "http_statuses"),
    [
        ("sim-fault_html", [502, 502]),
        ("sim-fault_internal_error-1", [400, 500]),
        ("sim-fault_key_expired", [401, 401]),
    ],
)
def test_fault_fates_answer_their_fault_after_the_pending_calls(
    upstream: httpx.Client, task_id: str, http_statuses: list[int]
) -> None:
    assert [poll(upstream, task_id).status_code for _ in http_statuses] == http_statuses


def test_forced_account_error_lasts_for_its_time(sim: SimServer, upstream: httpx.Client) -> None:
    before = time.time()
    faults = sim.control.force("key_expired", for_s=5)
    assert before + 5 <= faults["force"]["until"] <= time.time() + 5
    assert {poll(upstream, "sim-ring-0").json()["status"] for _ in range(4)} == {"KEY_EXPIRED"}
    sim.control.force(None)
    assert poll(upstream, "sim-ring-0").json()["status"] == "OK"


def test_account_error_switched_on_stays_until_switched_off(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.set_faults(force={"mode": "out_of_quota"})
    assert {poll(upstream, "sim-ring-0").status_code for _ in range(10)} == {403}
    sim.control.set_faults(force=None)
    assert poll(upstream, "sim-ring-0").status_code == 200


def test_enforced_rate_limit_refuses_calls_beyond_it_with_retry_after(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.set_faults(rate_limit_rps=5, retry_after_s=2)
    responses = [poll(upstream, "sim-never") for _ in range(8)]
    statuses = [r.json()["status"] for r in responses]
    assert statuses == ["PENDING"] * 5 + ["RATE_LIMIT_EXCEEDED"] * 3
    assert all(r.headers["retry-after"] == "2" for r in responses[5:])
    assert all("retry-after" not in r.headers for r in responses[:5])


def test_rate_limited_calls_do_not_advance_a_script(sim: SimServer, upstream: httpx.Client) -> None:
    sim.control.set_faults(rate_limit_rps=1)
    answers = [poll(upstream, "sim-ring-1").json()["status"] for _ in range(3)]
    assert answers == ["PENDING", "RATE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED"]
    assert sim.control.task("sim-ring-1")["pending_answers"] == 1


def test_fault_with_probability_one_hits_every_call(sim: SimServer, upstream: httpx.Client) -> None:
    sim.control.set_faults(probabilities={"internal_error": 1.0})
    assert {poll(upstream, "sim-ring-0").status_code for _ in range(10)} == {500}
    sim.control.set_faults(probabilities={"internal_error": 0})
    assert poll(upstream, "sim-ring-0").status_code == 200


def test_seeded_random_faults_repeat_after_a_reset(sim: SimServer, upstream: httpx.Client) -> None:
    def run() -> list[str]:
        sim.control.set_faults(probabilities={"html": 0.3, "internal_error": 0.2})
        [poll(upstream, "sim-never") for _ in range(60)]
        answers: list[str] = sim.control.task("sim-never")["answers"]
        sim.control.reset()
        return answers

    first, second = run(), run()
    assert first == second
    assert {"html", "INTERNAL_ERROR", "PENDING"} == set(first)


def test_random_fault_frequency_follows_its_probability() -> None:
    state = SimState(SimOptions(api_id="a", api_secret="s", seed=3))
    state.faults.probabilities = {FaultMode.EMPTY: 0.25}
    labels = [
        state.answer_call(Endpoint.TASK_RESULT, b"a", b"s", b'{"task_id": "sim-never"}').label
        for _ in range(4000)
    ]
    assert 900 <= labels.count("empty") <= 1100
