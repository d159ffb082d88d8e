"""The `phonebridge` command as a user runs it, for the tests that start real processes (e2e,
chaos): an environment holding only what the test gives it, and one-shot commands."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
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
