"""`phonebridge up`: migrate, then the API, a worker and the scheduler under one supervisor.

The children are the very commands production runs (`phonebridge migrate/api/worker/scheduler`),
configured through the environment. With PHONEBRIDGE_DATABASE_URL unset an embedded PostgreSQL is
started first, with PHONEBRIDGE_REDIS_URL unset an embedded Redis (each independently), both
under PHONEBRIDGE_DATA_DIR, which one `up` at a time holds with a lock file.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.config import ENV_PREFIX, Settings
from service.run.embedded import EmbeddedPostgres, EmbeddedRedis
from service.run.processes import ChildSpec, free_port, phonebridge_command
from service.run.supervisor import StopRequested, Supervisor, SupervisorFailed

LOCK_FILE_NAME = "up.lock"
SERVER_START_TIMEOUT_S = 60.0
MIGRATE_TIMEOUT_S = 120.0
API_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class UpOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    # Variables set for every child on top of this process's environment (the demo's).
    child_env: Mapping[str, str] = field(default_factory=dict)
    # Where the children's logs go; None: this terminal's stderr.
    log_dir: Path | None = None


@dataclass(frozen=True)
class Stack:
    """What `up` started: where the API answers and the environment its children share."""

    api_url: str
    env: Mapping[str, str]
    data_dir: Path
    embedded: tuple[str, ...]


def uses_embedded_servers(settings: Settings) -> bool:
    return settings.database_url is None or settings.redis_url is None


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold DATA_DIR for this process: two `up`s must not share embedded servers' files. The
    kernel drops the lock when the process dies, so a crash leaves no stale lock behind."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE_NAME
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise SupervisorFailed(
                f"{data_dir} is in use by another `phonebridge up` (pid {holder})"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def api_base_url(host: str, port: int) -> str:
    # A wildcard bind is reached through loopback from this machine.
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def start_stack(supervisor: Supervisor, settings: Settings, options: UpOptions) -> Stack:
    """Start everything `up` runs and return once the API answers."""
    data_dir = settings.data_dir.resolve()
    env = {**os.environ, **options.child_env, f"{ENV_PREFIX}DATA_DIR": str(data_dir)}
    embedded: list[str] = []
    embedded_urls: dict[str, str] = {}
    if settings.database_url is None:
        postgres = EmbeddedPostgres(data_dir, free_port())
        _prepare_postgres(supervisor, postgres)
        supervisor.launch(postgres.child())
        supervisor.wait_until(postgres.accepts_connections, SERVER_START_TIMEOUT_S, "PostgreSQL")
        postgres.ensure_database()
        embedded_urls[f"{ENV_PREFIX}DATABASE_URL"] = postgres.url
        embedded.append(f"PostgreSQL on 127.0.0.1:{postgres.port}")
    if settings.redis_url is None:
        redis_server = EmbeddedRedis(data_dir, free_port())
        redis_server.prepare()
        supervisor.launch(redis_server.child())
        supervisor.wait_until(redis_server.answers_ping, SERVER_START_TIMEOUT_S, "Redis")
        embedded_urls[f"{ENV_PREFIX}REDIS_URL"] = redis_server.url
        embedded.append(f"Redis on 127.0.0.1:{redis_server.port}")
    env.update(embedded_urls)
    if embedded:
        supervisor.say(f"embedded {' and '.join(embedded)}, data in {data_dir}")
        exports = " ".join(f"{name}={url}" for name, url in embedded_urls.items())
        # The ports are picked afresh at each start; other commands (api-key create) need them.
        supervisor.say(f"for other commands while this runs: export {exports}")

    def service(name: str, *args: str) -> ChildSpec:
        log_path = None if options.log_dir is None else options.log_dir / f"{name}.log"
        return ChildSpec(name=name, argv=phonebridge_command(*args), env=env, log_path=log_path)

    supervisor.run_to_completion(service("migrate", "migrate"), MIGRATE_TIMEOUT_S)
    port = options.port or free_port(options.host)
    _check_can_listen(options.host, port)
    supervisor.launch(service("api", "api", "--host", options.host, "--port", str(port)))
    supervisor.launch(service("worker", "worker"))
    supervisor.launch(service("scheduler", "scheduler"))
    api_url = api_base_url(options.host, port)
    supervisor.wait_until(lambda: _answers_health(api_url), API_START_TIMEOUT_S, "the API")
    return Stack(api_url=api_url, env=env, data_dir=data_dir, embedded=tuple(embedded))


def _check_can_listen(host: str, port: int) -> None:
    """Fail with the reason now, rather than watch the API die and restart on a taken port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SupervisorFailed(
                f"the API cannot listen on {host}:{port}: {error.strerror}"
            ) from None


def _prepare_postgres(supervisor: Supervisor, postgres: EmbeddedPostgres) -> None:
    try:
        postgres.prepare()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        # A Ctrl-C during initdb reaches initdb too (same process group): that is a stop.
        if supervisor.stop_requested:
            raise StopRequested from None
        raise SupervisorFailed(f"initdb failed; see {postgres.log_path}") from None


def _answers_health(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    """`phonebridge up`: until Ctrl-C or SIGTERM (exit 0), or a failure that stops it all (1)."""
    options = UpOptions(host=args.host, port=args.port)
    data_dir = settings.data_dir.resolve()
    lock = data_dir_lock(data_dir) if uses_embedded_servers(settings) else contextlib.nullcontext()
    supervisor = Supervisor(prefix="phonebridge up")
    try:
        with lock, supervisor:
            stack = start_stack(supervisor, settings, options)
            supervisor.say(
                f"API listening on {stack.api_url} (docs: {stack.api_url}/docs); "
                "Ctrl-C stops everything"
            )
            while True:
                supervisor.tend(60.0)
    except StopRequested:
        supervisor.say("stopped")
        return 0
    except SupervisorFailed as failure:
        supervisor.say(f"error: {failure}")
        return 1
