"""The `phonebridge` command as a user runs it, for the tests that start real processes (e2e,
chaos): an environment holding only what the test gives it, one-shot commands, and waiting for
what the processes do."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from service.sim.server import phonebridge_executable


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without PHONEBRIDGE_* variables, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBRIDGE_")}
    env.update(variables)
    return env


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


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1
) -> None:
    """Check `condition` every `interval_s` until it holds; fail naming `what` after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
