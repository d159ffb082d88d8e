"""What a probe from outside does to the API's connections (issue 29, items 2-4), against a real
`phonebridge api` process over raw sockets: headers are bounded (431), a request's headers and
body must keep coming (408, or the connection is closed), and a client that hangs up mid-body is
one line at info, not two tracebacks at ERROR. The server's timeouts are shortened to a second
here (PHONEBRIDGE_HTTP_HEADER_TIMEOUT_S, PHONEBRIDGE_HTTP_BODY_TIMEOUT_S)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from service.api.signins import KEY_PREFIX as SIGN_IN_FAILURES_PREFIX
from tests.support.commands import clean_environment
from tests.support.server import running_api

TIMEOUT_S = 1.0
HEADER_LIMIT_BYTES = 16 * 1024
# A request whose handler reads its body (unauthenticated, as the probe's was), cut short.
PARTIAL_SIGN_IN = (
    b"POST /portal/sign-in HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
    b"api_key=pbk_"
)


@pytest.fixture(scope="module")
def api_process(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[str]]]:
    """The API's URL and, filled when the module ends, its log lines (stderr)."""
    environment = clean_environment(
        PHONEBRIDGE_DATABASE_URL=database_url,
        PHONEBRIDGE_REDIS_URL=redis_url,
        PHONEBRIDGE_LOG_LEVEL="INFO",
        PHONEBRIDGE_HTTP_HEADER_TIMEOUT_S=str(TIMEOUT_S),
        PHONEBRIDGE_HTTP_BODY_TIMEOUT_S=str(TIMEOUT_S),
    )
    log_lines: list[str] = []
    with running_api(environment, tmp_path_factory.mktemp("cwd"), log_lines=log_lines) as (url, _):
        yield url, log_lines


@pytest.fixture
def api_url(api_process: tuple[str, list[str]]) -> str:
    return api_process[0]


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send what the server still takes: it may answer and close before the end."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n",  # one header of 1 MB
        b"".join(b"X-%d: v\r\n" % n for n in range(10_000)),  # 10,000 headers
        b"X-Big: " + b"a" * HEADER_LIMIT_BYTES + b"\r\n",  # just past the limit
    ],
    ids=["one-1MB-header", "10000-headers", "just-past-16KiB"],
)
def test_headers_past_16_kib_are_answered_431_and_the_connection_closed(
    api_url: str, headers: bytes
) -> None:
    with connect(api_url) as sock:
        send_all(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    assert b"connection: close" in answer


def test_a_50_mb_header_is_refused_after_16_kib_not_read_whole(api_url: str) -> None:
    started = time.monotonic()
    with connect(api_url) as sock:
        send_all(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 50 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert sent < 50 * 1024 * 1024, "the server read the whole 50 MB"
    assert time.monotonic() - started < 5
    assert httpx.get(f"{api_url}/healthz", timeout=5).status_code == 200


def test_headers_within_the_limit_are_served(api_url: str) -> None:
    padding = "a" * (HEADER_LIMIT_BYTES - 1024)
    response = httpx.get(f"{api_url}/healthz", headers={"x-padding": padding}, timeout=5)
    assert response.status_code == 200


def test_incomplete_headers_are_answered_408_after_the_timeout(api_url: str) -> None:
    started = time.monotonic()
    with connect(api_url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        answer = read_until_closed(sock)
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
    assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 5


def test_a_connection_that_sends_nothing_is_closed_after_the_timeout(api_url: str) -> None:
    started = time.monotonic()
    with connect(api_url) as sock:
        assert read_until_closed(sock) == b""
    assert TIMEOUT_S * 0.9 <= time.monotonic() - started < TIMEOUT_S + 5


def test_headers_that_trickle_in_are_timed_from_their_first_byte(api_url: str) -> None:
    with connect(api_url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        deadline = time.monotonic() + TIMEOUT_S * 3
        answer = b""
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Drip: 1\r\n")  # a header every 0.2 s never ends the request
                answer += sock.recv(65536)
                if answer:
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_a_body_that_stops_coming_closes_the_connection(api_url: str) -> None:
    started = time.monotonic()
    with connect(api_url) as sock:
        sock.sendall(PARTIAL_SIGN_IN)  # the handler waits for the rest of the body
        answer = read_until_closed(sock)
    assert answer == b""
    assert TIMEOUT_S * 0.9 <= time.monotonic() - started < TIMEOUT_S + 5


def test_a_client_that_hangs_up_mid_body_is_one_info_line_without_a_traceback(
    api_process: tuple[str, list[str]],
) -> None:
    api_url, log_lines = api_process
    seen = len(log_lines)
    with connect(api_url) as sock:
        host, port = sock.getsockname()[:2]
        client = f"{host}:{port}"
        sock.sendall(PARTIAL_SIGN_IN)
        time.sleep(0.2)  # the handler is reading the body
    # The server notices the hang-up; its log is read once it has answered the next request.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert httpx.get(f"{api_url}/healthz", timeout=5).status_code == 200
        lines = log_lines[seen:]
        if any(client in line for line in lines):
            break
        time.sleep(0.1)
    lines = log_lines[seen:]
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    disconnects = [entry for entry in entries if entry.get("client") == client]
    assert [(entry["event"], entry["level"]) for entry in disconnects] == [
        ("http.client_disconnected", "info")
    ], lines
    assert not any(entry.get("level") == "error" for entry in entries), lines
    assert not any("Traceback" in line for line in lines), lines


def test_head_works_where_get_does_on_the_real_server(api_url: str) -> None:
    get = httpx.get(f"{api_url}/healthz", timeout=5)
    head = httpx.head(f"{api_url}/healthz", timeout=5)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]


@pytest.fixture
def forget_failed_sign_ins(redis_url: str) -> Iterator[None]:
    """Every real server of this run shares the run's Redis and comes from 127.0.0.1: once this
    test has throttled the address, later tests would be refused for the rest of the minute."""
    yield
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{SIGN_IN_FAILURES_PREFIX}*"):
            client.delete(key)
    finally:
        client.close()


@pytest.mark.usefixtures("forget_failed_sign_ins")
def test_invalid_keys_past_the_default_limit_are_answered_429_by_the_real_server(
    api_url: str,
) -> None:
    # The probe sent 300 wrong keys at 36/s and was never slowed; the default allows 20 a minute.
    wrong = {"authorization": "Bearer pbk_" + "B" * 43}
    with httpx.Client(base_url=api_url, headers=wrong, timeout=5) as client:
        answers = [client.get("/v1/tasks").status_code for _ in range(25)]
        refused = client.get("/v1/tasks")
    assert 401 in answers
    assert answers[-1] == 429
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
