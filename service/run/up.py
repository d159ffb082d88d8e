"""`phonebridge up`: migrate, then the API, a worker and the scheduler under one supervisor.

The children are the very commands production runs (`phonebridge migrate/api/worker/scheduler`),
configured through the environment. With PHONEBRIDGE_DATABASE_URL unset an embedded PostgreSQL is
started first, with PHONEBRIDGE_REDIS_URL unset an embedded Redis (each independently), both
under PHONEBRIDGE_DATA_DIR, which one `up` at a time holds with a lock file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.config import COMMAND_NEEDS, ENV_PREFIX, Need, Settings, build_settings
from service.run.datadir import (
    DATABASE_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    data_dir_lock,
    record_embedded_servers,
    recorded_port,
)
from service.run.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    postgres_bin_dir,
    redis_server_binary,
)
from service.run.processes import ChildSpec, free_port, phonebridge_command, port_is_free
from service.run.supervisor import (
    StopRequested,
    Supervisor,
    SupervisorFailed,
    silence_stdout,
)

# The production commands `up` runs as children, each checked before any starts.
CHILD_COMMANDS = ("migrate", "api", "worker", "scheduler")
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
    # The command the user ran, for the one line that refuses its configuration.
    command: str = "up"


@dataclass(frozen=True)
class Stack:
    """What `up` started: where the API answers and the environment its children share."""

    api_url: str
    env: Mapping[str, str]
    data_dir: Path
    embedded: tuple[str, ...]


def uses_embedded_servers(settings: Settings) -> bool:
    return settings.database_url is None or settings.redis_url is None


def api_base_url(host: str, port: int) -> str:
    # A wildcard bind is reached through loopback from this machine.
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def check_configuration(settings: Settings, child_env: Mapping[str, str], command: str) -> None:
    """ConfigError now, naming the variable, for whatever a child would refuse once started:
    the settings the children get (this process's with `child_env` on top) and what each of
    their commands needs; the servers that `up` embeds count as given."""
    overrides = {
        name.removeprefix(ENV_PREFIX).lower(): value
        for name, value in child_env.items()
        if name.startswith(ENV_PREFIX)
    }
    child_settings = build_settings(**overrides) if overrides else settings
    embedded: set[Need] = set()
    if settings.database_url is None:
        postgres_bin_dir()  # ConfigError when phonebridge[embedded] is not installed
        embedded.add(Need.DATABASE)
    if settings.redis_url is None:
        redis_server_binary()
        embedded.add(Need.REDIS)
    for child in CHILD_COMMANDS:
        child_settings.check_needs(
            COMMAND_NEEDS[child] - embedded, f"`phonebridge {command}` (its {child})"
        )


def embedded_port(data_dir: Path, variable: str) -> int:
    """The port this embedded server had last time when it is free (so URLs copied from an
    earlier run keep working), else any free one."""
    previous = recorded_port(data_dir, variable)
    if previous is not None and port_is_free(previous):
        return previous
    return free_port()


def start_stack(supervisor: Supervisor, settings: Settings, options: UpOptions) -> Stack:
    """Start everything `up` runs and return once the API answers."""
    check_configuration(settings, options.child_env, options.command)
    data_dir = settings.data_dir.resolve()
    env = {**os.environ, **options.child_env, f"{ENV_PREFIX}DATA_DIR": str(data_dir)}
    embedded: list[str] = []
    embedded_urls: dict[str, str] = {}
    if settings.database_url is None:
        postgres = EmbeddedPostgres(data_dir, embedded_port(data_dir, DATABASE_URL_VARIABLE))
        _prepare_postgres(supervisor, postgres)
        supervisor.launch(postgres.child())
        supervisor.wait_until(postgres.accepts_connections, SERVER_START_TIMEOUT_S, "PostgreSQL")
        postgres.ensure_database()
        embedded_urls[DATABASE_URL_VARIABLE] = postgres.url
        embedded.append(f"PostgreSQL on 127.0.0.1:{postgres.port}")
    if settings.redis_url is None:
        redis_server = EmbeddedRedis(data_dir, embedded_port(data_dir, REDIS_URL_VARIABLE))
        redis_server.prepare()
        supervisor.launch(redis_server.child())
        supervisor.wait_until(redis_server.answers_ping, SERVER_START_TIMEOUT_S, "Redis")
        embedded_urls[REDIS_URL_VARIABLE] = redis_server.url
        embedded.append(f"Redis on 127.0.0.1:{redis_server.port}")
    env.update(embedded_urls)
    if embedded:
        record_embedded_servers(data_dir, embedded_urls)
        supervisor.say(f"embedded {' and '.join(embedded)}, data in {data_dir}")
        exports = " ".join(f"{name}={url}" for name, url in embedded_urls.items())
        supervisor.say(
            "phonebridge commands run with this PHONEBRIDGE_DATA_DIR use these servers while "
            f"this runs; elsewhere: export {exports}"
        )

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
    with httpx.Client(timeout=1.0) as client:
        supervisor.wait_until(
            lambda: _answers_health(client, api_url), API_START_TIMEOUT_S, "the API"
        )
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


def _answers_health(client: httpx.Client, api_url: str) -> bool:
    """One probe of the API's liveness, through one client for the whole wait (each client
    builds a TLS context, about 20 ms of CPU, even for plain HTTP)."""
    try:
        return client.get(f"{api_url}/healthz").status_code == 200
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
    except BrokenPipeError:
        # The output's reader went away (SIGPIPE's counterpart): everything was stopped in order
        # on the way out of the supervisor.
        silence_stdout()
        return 0
    except SupervisorFailed as failure:
        supervisor.say(f"error: {failure}")
        return 1
