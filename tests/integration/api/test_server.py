"""The API as a user runs it: `phonebridge api-key create`, then `phonebridge api` in its own
process, spoken to over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from service.api.body_limit import MAX_BODY_BYTES
from tests.support.commands import clean_environment
from tests.support.server import PHONEBRIDGE, running_api


@pytest.fixture(scope="module")
def environment(database_url: str, redis_url: str) -> dict[str, str]:
    return clean_environment(
        PHONEBRIDGE_DATABASE_URL=database_url,
        PHONEBRIDGE_REDIS_URL=redis_url,
        PHONEBRIDGE_LOG_LEVEL="WARNING",
    )


@pytest.fixture(scope="module")
def cli_key(environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    created = subprocess.run(
        [PHONEBRIDGE, "api-key", "create", "--name", "server test"],
        env=environment,
        cwd=tmp_path_factory.mktemp("cwd"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = created.stdout.rstrip("\n").splitlines()[-1]
    assert key.startswith("pbk_")
    assert key not in created.stderr
    return key


@pytest.fixture(scope="module")
def server(environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_api(environment, tmp_path_factory.mktemp("cwd")) as (url, _):
        yield url


def test_cli_key_registers_and_reads_a_task_over_http(server: str, cli_key: str) -> None:
    headers = {"Authorization": f"Bearer {cli_key}"}
    with httpx.Client(base_url=server, headers=headers, timeout=10) as client:
        created = client.post("/v1/tasks", json={"task_id": "SRV-1", "metadata": {"a": 1}})
        assert created.status_code == 201
        assert client.post("/v1/tasks", json={"task_id": "SRV-1"}).status_code == 200
        fetched = client.get("/v1/tasks/SRV-1")
        assert fetched.json() == created.json()
        assert client.get("/readyz").json()["status"] == "ok"
        assert client.get("/openapi.json").status_code == 200


def test_wrong_key_over_http_answers_401(server: str) -> None:
    response = httpx.get(f"{server}/v1/tasks", headers={"Authorization": "Bearer pbk_nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def raw_request(server: str, head: bytes, body_chunks: Iterator[bytes]) -> bytes:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        return received


def test_declared_oversized_body_is_refused_before_it_is_sent(server: str, cli_key: str) -> None:
    head = (
        f"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cli_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()
    # Not one byte of the body is sent: the answer comes from the headers alone.
    answer = raw_request(server, head, iter(()))
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"application/problem+json" in answer


def test_chunked_oversized_body_is_cut_off_with_413(server: str, cli_key: str) -> None:
    head = (
        f"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cli_key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b" " * 65536

    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # 2.5 MiB
            yield b"%x\r\n%s\r\n" % (len(piece), piece)
        yield b"0\r\n\r\n"

    answer = raw_request(server, head, chunks())
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_workers_option_serves_from_that_many_processes(
    environment: dict[str, str], cli_key: str, tmp_path: Path
) -> None:
    with running_api(environment, tmp_path, "--workers", "2") as (url, process):
        # uvicorn starts each worker as a multiprocessing child of the `phonebridge api` process.
        children = psutil.Process(process.pid).children()
        workers = [child for child in children if "spawn_main" in " ".join(child.cmdline())]
        assert len(workers) == 2
        headers = {"Authorization": f"Bearer {cli_key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            for n in range(20):
                assert client.post("/v1/tasks", json={"task_id": f"WRK-{n}"}).status_code == 201
            assert client.get("/v1/tasks/WRK-19").json()["task_id"] == "WRK-19"


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_workers_option_refuses_anything_but_a_positive_count(
    environment: dict[str, str], workers: str, tmp_path: Path
) -> None:
    finished = subprocess.run(
        [PHONEBRIDGE, "api", "--workers", workers],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert "--workers" in finished.stderr.strip().splitlines()[-1]
