"""`phonebridge api` in its own process, as a user runs it, for tests that speak real HTTP (or raw
bytes) to it on 127.0.0.1."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from service.run.processes import free_port
from service.sim.server import phonebridge_executable
from tests.support.waiting import wait_until

PHONEBRIDGE = phonebridge_executable()
START_TIMEOUT_S = 30.0


@contextmanager
def running_api(
    environment: dict[str, str], cwd: Path, *options: str, log_lines: list[str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`phonebridge api` on a free port until the block ends; yields its base URL and process.
    With `log_lines`, each line the process logs (stderr) is appended to it as it comes."""
    port = free_port()
    process = subprocess.Popen(
        [PHONEBRIDGE, "api", "--port", str(port), *options],
        env=environment,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    if log_lines is not None:
        threading.Thread(target=_collect, args=(process, log_lines), daemon=True).start()
    try:
        # One client for the whole wait: each httpx.get builds a client, and with it a TLS
        # context that loads the CA bundle (about 20 ms of CPU), ten times a second.
        with httpx.Client(timeout=1) as client:

            def healthy() -> bool:
                assert process.poll() is None, "phonebridge api exited"
                try:
                    return client.get(f"{url}/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(healthy, START_TIMEOUT_S, "phonebridge api to start")
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None and log_lines is None:
            process.stderr.close()


def _collect(process: subprocess.Popen[bytes], lines: list[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line.decode(errors="replace").rstrip("\n"))
