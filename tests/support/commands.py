"""The `phonebridge` command as a user runs it, for the tests that start real processes (e2e,
chaos): an environment holding only what the test gives it (no .env, no stray PHONEBRIDGE_*),
one-shot commands, long-running ones whose output is read as it is printed, and what they
leave behind."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil

from service.sim.server import phonebridge_executable
from tests.support.api import bearer
from tests.support.upstream import API_ID, API_SECRET
from tests.support.waiting import wait_until

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without PHONEBRIDGE_* variables, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBRIDGE_")}
    env.update(variables)
    return env


def upstream_environment(
    database_url: str, redis_url: str, upstream_url: str, **variables: str
) -> dict[str, str]:
    """`clean_environment` of a phonebridge that talks to the upstream simulator at
    `upstream_url` with the test credentials (unless `variables` name others), plus
    `variables`."""
    credentials = {
        "PHONEBRIDGE_UPSTREAM_API_ID": API_ID,
        "PHONEBRIDGE_UPSTREAM_API_SECRET": API_SECRET,
    }
    return clean_environment(
        PHONEBRIDGE_DATABASE_URL=database_url,
        PHONEBRIDGE_REDIS_URL=redis_url,
        PHONEBRIDGE_UPSTREAM_BASE_URL=upstream_url,
        **{**credentials, **variables},
    )


def create_api_key(env: Mapping[str, str], cwd: Path, name: str) -> str:
    """`phonebridge api-key create`, as an operator runs it; the key on its last line."""
    finished = subprocess.run(
        [phonebridge_executable(), "api-key", "create", "--name", name],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return finished.stdout.strip().splitlines()[-1]


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
    headers = bearer(api_key)
    with httpx.Client(base_url=api_url, headers=headers, timeout=5.0) as client:

        def task_in_state() -> dict[str, Any] | None:
            response = client.get(f"/v1/tasks/{task_id}")
            response.raise_for_status()
            task: dict[str, Any] = response.json()
            return task if task["state"] == state else None

        found: dict[str, Any] = wait_until(
            task_in_state, timeout_s, f"task {task_id} to be {state}", interval_s=0.2
        )
        return found


def run_command(env: Mapping[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A one-shot `phonebridge` command, as an operator runs it; its output, whatever its exit."""
    return subprocess.run(
        [phonebridge_executable(), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
