"""Running the simulator: in this process on a background thread (`SimServer`), as a real
`phonebridge upstream-sim` child process (`SimProcess`), and talking to either (`SimControl`).

    with SimServer(SimOptions(api_id="id", api_secret="secret")) as sim:
        sim.control.register(script="ring-2", task_id="T-1")
        ...  # point the client at sim.base_url
        assert sim.control.task("T-1")["calls"] == 3
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn

from service.serving import BackgroundServer
from service.sim.app import SimApp
from service.sim.defaults import LISTENING_PREFIX
from service.sim.state import SimOptions, SimState


class _SimUvicorn(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown, so the process would die
    of the signal; the simulator treats both as a normal stop and exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stop_signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in stop_signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def uvicorn_server(state: SimState, *, log_level: str = "warning") -> uvicorn.Server:
    """A single-process uvicorn on uvloop and httptools, with nothing the simulator does not use."""
    config = uvicorn.Config(
        SimApp(state),
        loop="uvloop",
        http="httptools",
        lifespan="on",  # the callback sender closes its connections at shutdown
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        log_config=None,
        log_level=log_level,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
        backlog=2048,
    )
    return _SimUvicorn(config)


class SimServer(BackgroundServer):
    """The simulator on an ephemeral port, served from a background thread of this process."""

    def __init__(
        self, options: SimOptions | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = SimState(options or SimOptions())
        super().__init__(
            uvicorn_server(self.state), name="upstream simulator", host=host, port=port
        )
        self.control = SimControl(self.base_url)

    def stop(self) -> None:
        super().stop()
        self.control.close()


def phonebridge_executable() -> str:
    """The `phonebridge` script installed next to this interpreter."""
    return str(Path(sys.executable).with_name("phonebridge"))


class SimProcess:
    """`phonebridge upstream-sim` as a child process (for end-to-end and chaos tests, which may
    kill and restart it). Pass extra CLI options in `args`; the port defaults to a free one."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: dict[str, str] | None = None,
        port: int = 0,
        log_path: Path | None = None,
    ) -> None:
        self.args = [phonebridge_executable(), "upstream-sim", "--port", str(port), *args]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path  # where its JSON log (stderr) goes; None discards it
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.control = SimControl("http://127.0.0.1")

    def start(self) -> None:
        with contextlib.ExitStack() as files:
            stderr: Any = subprocess.DEVNULL
            if self.log_path is not None:
                stderr = files.enter_context(self.log_path.open("ab"))
            self.process = subprocess.Popen(  # noqa: S603 - our own script and options
                self.args,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=self.env,
            )
        assert self.process.stdout is not None
        # The first line on stdout names the address; a process that dies first gives EOF.
        line = self.process.stdout.readline()
        if not line.startswith(LISTENING_PREFIX):
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"upstream-sim did not start (exit code {self.process.returncode})")
        self.base_url = line.removeprefix(LISTENING_PREFIX).strip()
        self.control.close()
        self.control = SimControl(self.base_url)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send `sig` (SIGKILL for a crash) and wait; the exit code."""
        self.control.close()
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SimControl:
    """A small client of the /_sim/ control API (synchronous; the server runs elsewhere)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"/_sim/{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "health")
        return result

    def register(
        self,
        task_id: str | None = None,
        *,
        script: str | None = None,
        fate: str | None = None,
        pending_calls: int = 0,
        pending_s: float = 0.0,
        phone_number: str | None = None,
        submitted_at: float | None = None,
        ttl_s: float | None = None,
    ) -> dict[str, Any]:
        """Register a task; without a task_id one is made up. Returns the task's view."""
        body: dict[str, Any] = {"pending_calls": pending_calls, "pending_s": pending_s}
        optional = {
            "task_id": task_id,
            "script": script,
            "fate": fate,
            "phone_number": phone_number,
            "submitted_at": submitted_at,
            "ttl_s": ttl_s,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        result: dict[str, Any] = self._call("POST", "tasks", json=body)
        return result

    def register_many(self, tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("POST", "tasks", json={"tasks": list(tasks)})[
            "tasks"
        ]
        return result

    def task(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"tasks/{task_id}")
        return result

    def calls(
        self,
        *,
        task_id: str | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        params = _params(task_id=task_id, endpoint=endpoint, since=since, until=until)
        result: list[dict[str, Any]] = self._call("GET", "calls", params=params)["calls"]
        return result

    def stats(
        self,
        *,
        window_s: float = 1.0,
        endpoint: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, Any]:
        params = _params(window_s=window_s, endpoint=endpoint, since=since, until=until)
        result: dict[str, Any] = self._call("GET", "stats", params=params)
        return result

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "faults")
        return result

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """PATCH the fault settings: probabilities={...}, slow_s, rate_limit_rps, retry_after_s,
        force={"mode", "for_s"?, "calls"?}; None switches a setting off."""
        result: dict[str, Any] = self._call("PATCH", "faults", json=changes)
        return result

    def replace_faults(self, **settings: Any) -> dict[str, Any]:
        """PUT the fault settings: whatever is not given is off."""
        result: dict[str, Any] = self._call("PUT", "faults", json=settings)
        return result

    def force(
        self, mode: str | None, *, for_s: float | None = None, calls: int | None = None
    ) -> dict[str, Any]:
        """Every call gets `mode` (for `for_s` seconds / `calls` calls); None switches it off."""
        if mode is None:
            return self.set_faults(force=None)
        force: dict[str, Any] = {"mode": mode}
        if for_s is not None:
            force["for_s"] = for_s
        if calls is not None:
            force["calls"] = calls
        return self.set_faults(force=force)

    def config(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "config")
        return result

    def configure(
        self, *, submit_script: str | None = None, task_ttl_s: float | None = None
    ) -> dict[str, Any]:
        """Change the script of submitted checks ("random" or e.g. "ring-2") and the validity
        of tasks registered from now on."""
        changes = _params(submit_script=submit_script, task_ttl_s=task_ttl_s)
        result: dict[str, Any] = self._call("PATCH", "config", json=changes)
        return result

    def script_number(self, phone_number: str, *scripts: str) -> dict[str, Any]:
        """The number's n-th submit from now takes the n-th script (the task_id grammar without
        "sim-", e.g. "temp_unavailable", "ring-2"), later ones the last; none unscripts it."""
        result: dict[str, Any] = self._call(
            "PUT", f"numbers/{phone_number}", json={"scripts": list(scripts)}
        )
        return result

    def number(self, phone_number: str) -> dict[str, Any]:
        """A number's scripts and how many submits the simulator accepted for it."""
        result: dict[str, Any] = self._call("GET", f"numbers/{phone_number}")
        return result

    def set_callbacks(
        self,
        *,
        lose: float = 0.0,
        delay_s: float = 0.0,
        duplicate: float = 0.0,
        forge: float = 0.0,
    ) -> dict[str, Any]:
        """How upstream's callbacks misbehave from now on (probabilities per callback)."""
        body = {"lose": lose, "delay_s": delay_s, "duplicate": duplicate, "forge": forge}
        result: dict[str, Any] = self._call("PUT", "callbacks", json=body)
        return result

    def callback_log(self) -> list[dict[str, Any]]:
        """The newest callbacks planned (service/sim/callbacks.py, CALLBACK_LOG_KEPT), oldest
        first, each with what became of it."""
        result: list[dict[str, Any]] = self._call("GET", "callbacks/log")["callbacks"]
        return result

    def callback_counts(self) -> dict[str, Any]:
        """Every callback planned since the start or reset, by kind, and how many of them the
        log no longer holds."""
        body: dict[str, Any] = self._call("GET", "callbacks/log")
        return {name: body[name] for name in ("planned", "planned_by_kind", "dropped")}

    def lost_callbacks(self) -> list[str]:
        """The task_ids whose callback was lost."""
        return [c["task_id"] for c in self.callback_log() if c["kind"] == "lost"]

    def reset(self) -> None:
        self._call("POST", "reset")


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
