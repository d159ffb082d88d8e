"""One supervised child process, and the small facts about processes the supervisor needs."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import IO, Any

# The CLI's exit code for an unusable configuration (service.config.exit_with): restarting a
# process that exits with it cannot help.
CONFIG_ERROR_EXIT_CODE = 2

_PR_SET_PDEATHSIG = 1


class Tier(IntEnum):
    """Start order; shutdown goes the other way, so servers outlive the processes using them."""

    INFRASTRUCTURE = 0  # embedded PostgreSQL and Redis
    SERVICE = 1  # api, worker, scheduler, simulator


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child. `restart` says whether its unexpected death is survivable (a
    restart with backoff) or brings the whole supervisor down."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    tier: Tier = Tier.SERVICE
    restart: bool = True
    stop_signal: signal.Signals = signal.SIGTERM
    user: str | None = None  # run as this system user (an embedded PostgreSQL under root)
    log_path: Path | None = None  # stdout and stderr go here; None: inherit the supervisor's
    cwd: Path | None = None
    capture_stdout: bool = False  # a one-shot whose small output the supervisor reads (a key)


def phonebridge_command(*args: str) -> list[str]:
    """The `phonebridge` CLI run by this interpreter, so children use the same install."""
    return [sys.executable, "-m", "service.cli", *args]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now (sockets in TIME_WAIT do not count: the
    embedded servers set SO_REUSEADDR as well)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def as_user(name: str | None) -> dict[str, Any]:
    """Popen arguments that run a program as system user `name`: its uid, its own group and
    no supplementary groups (root's group would otherwise decide access to root's folders)."""
    if name is None:
        return {}
    entry = pwd.getpwnam(name)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to send `sig` to the child when the supervisor dies, so even
    a SIGKILLed supervisor leaves no orphans. None where prctl does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    # Looked up before fork: the hook runs between fork and exec and must do almost nothing.
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    parent = os.getpid()

    def ask_for_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The supervisor may have died between fork and prctl; then nobody will signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), int(sig))

    return ask_for_signal


class Child:
    """A running child in its own process group: a terminal's Ctrl-C reaches only the
    supervisor, which then stops children in order instead of all at once."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.started_at = time.monotonic()
        log: IO[Any] | None = None
        with contextlib.ExitStack() as files:
            if spec.log_path is not None:
                spec.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = files.enter_context(spec.log_path.open("ab"))
            self.process: subprocess.Popen[bytes] = subprocess.Popen(  # noqa: S603 - ours
                list(spec.argv),
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if spec.capture_stdout else log,
                stderr=log,
                process_group=0,
                **as_user(spec.user),
                preexec_fn=_parent_death_signal(spec.stop_signal),
            )

    def captured_output(self) -> str:
        """What a finished `capture_stdout` child printed."""
        if self.process.stdout is None:
            return ""
        with self.process.stdout:
            return self.process.stdout.read().decode("utf-8", errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def send_stop(self) -> None:
        """Ask the child to stop gracefully; it stops its own helpers (PostgreSQL's backends)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(self.spec.stop_signal)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process.poll() is not None:
            # Reaped: its process group id may already belong to somebody else.
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout=max(timeout_s, 0.0))
        except subprocess.TimeoutExpired:
            return None


def stop_children(children: Sequence[Child], grace_s: float) -> list[Child]:
    """Stop every child together: the stop signal, up to `grace_s` to exit, then SIGKILL.
    Returns the children that had to be killed."""
    for child in children:
        child.send_stop()
    deadline = time.monotonic() + grace_s
    killed: list[Child] = []
    for child in children:
        if child.wait(deadline - time.monotonic()) is None:
            child.kill()
            child.wait(5.0)
            killed.append(child)
    return killed


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
