"""The supervisor's policy, with real (tiny) child processes: restart with backoff, give up on a
configuration error or a dead server, escalate to SIGKILL, hold the data directory alone."""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from service.run.datadir import LOCK_FILE_NAME, data_dir_lock
from service.run.processes import ChildSpec, Tier
from service.run.supervisor import (
    MAX_BACKOFF_S,
    StopRequested,
    Supervisor,
    SupervisorFailed,
    restart_delay,
)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SLEEPS = "import time; time.sleep(60)"
IGNORES_SIGTERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (50, 30.0)],
)
def test_restart_delay_doubles_from_one_second_up_to_the_cap(failures: int, delay: float) -> None:
    assert restart_delay(failures) == delay <= MAX_BACKOFF_S


def test_a_service_that_dies_is_reported_and_restarted() -> None:
    out = io.StringIO()
    with Supervisor(out=out, grace_s=2) as supervisor:
        supervisor.launch(ChildSpec("flaky", python("import sys; sys.exit(3)")))
        supervisor.wait_until(lambda: "restarted flaky" in out.getvalue(), 10, "a restart")
    assert "flaky (pid" in out.getvalue()
    assert "died (exit code 3); restarting in 1 s" in out.getvalue()


def test_a_configuration_error_brings_everything_down_without_restarts() -> None:
    out = io.StringIO()
    with Supervisor(out=out, grace_s=2) as supervisor:
        bystander = supervisor.launch(ChildSpec("bystander", python(SLEEPS)))
        supervisor.launch(ChildSpec("misconfigured", python("import sys; sys.exit(2)")))
        with pytest.raises(SupervisorFailed, match="misconfigured refused its configuration"):
            supervisor.wait_until(lambda: False, 10, "a failure")
    assert bystander.poll() is not None
    assert "restarting" not in out.getvalue()


def test_a_dead_embedded_server_brings_everything_down() -> None:
    spec = ChildSpec("database", python("pass"), tier=Tier.INFRASTRUCTURE, restart=False)
    with Supervisor(out=io.StringIO()) as supervisor:
        supervisor.launch(spec)
        with pytest.raises(SupervisorFailed, match="database stopped unexpectedly"):
            supervisor.wait_until(lambda: False, 10, "a failure")


def test_a_child_that_ignores_the_stop_signal_is_killed_after_the_grace_period() -> None:
    out = io.StringIO()
    with Supervisor(out=out, grace_s=0.5) as supervisor:
        stubborn = supervisor.launch(
            ChildSpec("stubborn", python(IGNORES_SIGTERM), capture_stdout=True)
        )
        assert stubborn.process.stdout is not None
        assert stubborn.process.stdout.readline() == b"ready\n"
    assert stubborn.poll() == -9
    assert "stubborn did not stop within 0 s; killed it" in out.getvalue()
    assert not psutil.pid_exists(stubborn.pid)


def test_services_stop_before_the_servers_they_use() -> None:
    out = io.StringIO()
    with Supervisor(out=out, grace_s=2) as supervisor:
        supervisor.launch(ChildSpec("server", python(SLEEPS), tier=Tier.INFRASTRUCTURE))
        supervisor.launch(ChildSpec("service", python(SLEEPS)))
    lines = out.getvalue().splitlines()
    assert lines.index("phonebridge: stopping service") < lines.index(
        "phonebridge: stopping server"
    )


def test_a_second_holder_of_the_data_directory_is_refused(tmp_path: Path) -> None:
    with data_dir_lock(tmp_path):
        with pytest.raises(SupervisorFailed, match="in use by another"), data_dir_lock(tmp_path):
            pass
        assert (tmp_path / LOCK_FILE_NAME).exists()
    assert not (tmp_path / LOCK_FILE_NAME).exists()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGPIPE])
def test_a_closed_terminal_or_a_gone_reader_stops_everything_like_ctrl_c(
    sig: signal.Signals,
) -> None:
    with Supervisor(out=io.StringIO(), grace_s=2) as supervisor:
        child = supervisor.launch(ChildSpec("service", python(SLEEPS)))
        os.kill(os.getpid(), sig)
        with pytest.raises(StopRequested):
            supervisor.wait_until(lambda: False, 10, "the stop")
    assert child.poll() is not None


class GoneReader(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_saying_something_to_a_reader_that_is_gone_stops_and_does_not_raise() -> None:
    supervisor = Supervisor(out=GoneReader())
    supervisor.say("stopping service")
    assert supervisor.stop_requested
