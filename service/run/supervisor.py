"""The supervisor of `phonebridge up`: children in tiers, restarts with backoff, ordered stop.

Policy when a child dies unexpectedly:
- a service (api, worker, scheduler, simulator) is reported and restarted after a backoff that
  doubles from 1 s up to 30 s; a run of `STABLE_AFTER_S` resets it. These processes keep no state
  of their own (Postgres is the truth), so a restart is always safe. Giving up after
  `MAX_QUICK_FAILURES` short-lived runs in a row, or at once when the exit code says the
  configuration is unusable, brings everything down with the reason.
- an embedded server (PostgreSQL, Redis) brings everything down: every other process depends on
  it, and its log under PHONEBRIDGE_DATA_DIR says why.

SIGINT or SIGTERM stops the services first, then the servers: each tier gets the stop signal,
`grace_s` to exit, then SIGKILL. SIGHUP (the terminal closed) and SIGPIPE (whatever read the
output is gone: a Ctrl-C stops `| tee` too) stop it the same way, and the output then goes
nowhere rather than interrupting the ordered stop. Every child runs in its own process group
and is asked by the kernel to stop if the supervisor itself dies, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Self, TextIO

from service.run.processes import (
    CONFIG_ERROR_EXIT_CODE,
    Child,
    ChildSpec,
    Tier,
    describe_exit,
    stop_children,
)

STABLE_AFTER_S = 30.0
MAX_QUICK_FAILURES = 5
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
DEFAULT_GRACE_S = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived: the caller unwinds and the supervisor stops its children."""


class SupervisorFailed(Exception):
    """Everything must come down; the message says why in one line and is safe to print."""


def restart_delay(consecutive_failures: int) -> float:
    """Doubling backoff before the n-th consecutive restart (n >= 1), capped."""
    return float(min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(consecutive_failures - 1, 0)))


@dataclass
class _Slot:
    spec: ChildSpec
    child: Child | None
    failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Use as a context manager: it installs the signal handlers on entry and stops every child
    on exit, whatever happened in between."""

    def __init__(
        self,
        *,
        out: TextIO | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        prefix: str = "phonebridge",
    ) -> None:
        self._out = out
        self.grace_s = grace_s
        self.prefix = prefix
        self._slots: list[_Slot] = []
        self._one_shots: list[Child] = []
        self._stop_requested = False
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._reader, selectors.EVENT_READ)
        self._previous: dict[signal.Signals, object] = {}
        self._previous_wakeup_fd = -1

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Self:
        # The wakeup fd turns signals (SIGCHLD included) into readable bytes, so `tend` sleeps
        # in select() and still wakes at once for a dying child or a Ctrl-C.
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._writer.fileno())
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._request_stop)
        self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _ignore_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop_all()
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._selector.close()
            self._reader.close()
            self._writer.close()

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def say(self, message: str) -> None:
        # Resolved at each call: a live view may stand in for stdout meanwhile.
        out = self._out or sys.stdout
        try:
            print(f"{self.prefix}: {message}", file=out, flush=True)
        except OSError:
            # A reader that went away (EPIPE) or a closed terminal (EIO): stop, and say nothing
            # more, or this very line would cut the ordered stop short.
            self._stop_requested = True
            if out is sys.stdout:
                silence_stdout()

    # --- children ----------------------------------------------------------------------------
    def launch(self, spec: ChildSpec) -> Child:
        """Start a long-running child and keep it running under the restart policy."""
        self._check_stop()
        child = Child(spec)
        self._slots.append(_Slot(spec, child))
        self.say(f"started {spec.name} (pid {child.pid})")
        return child

    def run_to_completion(self, spec: ChildSpec, timeout_s: float) -> str:
        """Run a one-shot child (migrate, api-key create) while still watching the others, and
        return its stdout when captured; SupervisorFailed unless it exits 0 in time."""
        self._check_stop()
        child = Child(spec)
        self._one_shots.append(child)
        deadline = time.monotonic() + timeout_s
        try:
            while (code := child.poll()) is None:
                if time.monotonic() > deadline:
                    raise SupervisorFailed(f"{spec.name} did not finish within {timeout_s:.0f} s")
                self.tend(min(0.5, max(deadline - time.monotonic(), 0.0)))
        finally:
            if child.poll() is None:
                stop_children([child], self.grace_s)
            self._one_shots.remove(child)
        if code != 0:
            raise SupervisorFailed(f"{spec.name} failed ({describe_exit(code)})")
        return child.captured_output()

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Check `ready` until it holds, tending the children in between."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise SupervisorFailed(f"{what} was not ready within {timeout_s:.0f} s")
            self.tend(0.05)

    def pids(self) -> list[int]:
        return [slot.child.pid for slot in self._slots if slot.child is not None]

    # --- the loop ----------------------------------------------------------------------------
    def tend(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for a signal or a child's death, then act on what happened:
        StopRequested, SupervisorFailed, or restarts (now or scheduled)."""
        self._check_stop()
        now = time.monotonic()
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        wait_s = max(0.0, min([timeout_s, *(at - now for at in due)]))
        if self._selector.select(wait_s):
            with contextlib.suppress(BlockingIOError):
                while self._reader.recv(4096):
                    pass
        self._check_stop()
        self._reap()
        self._restart_due()

    def _check_stop(self) -> None:
        if self._stop_requested:
            raise StopRequested

    def _reap(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            child = slot.child
            if child is None or (code := child.poll()) is None:
                continue
            slot.child = None
            spec = slot.spec
            ran_s = now - child.started_at
            how = describe_exit(code)
            if not spec.restart:
                where = f"; see {spec.log_path}" if spec.log_path is not None else ""
                raise SupervisorFailed(f"{spec.name} stopped unexpectedly ({how}){where}")
            if code == CONFIG_ERROR_EXIT_CODE:
                raise SupervisorFailed(f"{spec.name} refused its configuration ({how})")
            slot.failures = 1 if ran_s >= STABLE_AFTER_S else slot.failures + 1
            if slot.failures >= MAX_QUICK_FAILURES:
                raise SupervisorFailed(
                    f"{spec.name} died {slot.failures} times in a row ({how}); giving up"
                )
            delay = restart_delay(slot.failures)
            slot.restart_at = now + delay
            self.say(f"{spec.name} (pid {child.pid}) died ({how}); restarting in {delay:.0f} s")

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                slot.restart_at = None
                slot.child = Child(slot.spec)
                self.say(f"restarted {slot.spec.name} (pid {slot.child.pid})")

    # --- stopping ----------------------------------------------------------------------------
    def stop_all(self) -> None:
        """Stop one-shots and services, then the servers they use; SIGKILL what outstays the
        grace period."""
        stop_children(self._one_shots, self.grace_s)
        self._one_shots.clear()
        for tier in sorted(Tier, reverse=True):
            children = [
                slot.child
                for slot in self._slots
                if slot.spec.tier is tier and slot.child is not None
            ]
            if not children:
                continue
            self.say(f"stopping {', '.join(child.spec.name for child in children)}")
            for child in stop_children(children, self.grace_s):
                self.say(f"{child.spec.name} did not stop within {self.grace_s:.0f} s; killed it")
        self._slots.clear()


def silence_stdout() -> None:
    """Send whatever this process prints from now on (buffered lines included) nowhere: its
    reader is gone, and a write to it would raise again, down to the interpreter's exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD needs a handler (not SIG_IGN, which would auto-reap) to reach the wakeup fd."""


def pid_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
