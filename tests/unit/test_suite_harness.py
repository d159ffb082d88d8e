"""What the suite promises about the processes its tests start (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys

SHOWS_CTRL_C = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"


def test_a_command_a_test_starts_takes_ctrl_c_even_when_the_suite_runs_in_the_background() -> None:
    """Run in the foreground this holds anyway; run as a script's background job (SIGINT
    ignored, inherited), it holds only through tests/conftest.py."""
    shown = subprocess.run(
        [sys.executable, "-c", SHOWS_CTRL_C],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.strip() == "True"
