"""The whole of phonebridge as an operator runs it, for the chaos tests: a PostgreSQL and a Redis
of the suite's own (so they can be stopped, flushed and restarted without touching anything
else on the machine), the upstream simulator, and the `phonebridge` commands `migrate`, `api`,
two `worker`s and `scheduler`, each a child process with its own log file.

Times are compressed (polls every 0.2-1 s, 3 s leases, 1 s timeouts, webhook retries within
seconds) so that what takes hours in production takes seconds here, through the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from service.config import build_settings
from service.features.keys import create_client_and_key
from service.run.embedded import EmbeddedPostgres, EmbeddedRedis
from service.run.processes import (
    Child,
    ChildSpec,
    Tier,
    free_port,
    phonebridge_command,
    stop_children,
)
from service.sim.server import SimProcess
from tests.support.commands import START_TIMEOUT_S, clean_environment
from tests.support.embedded import remove_embedded_cluster
from tests.support.waiting import wait_until

SIM_API_ID = "chaos-sim-api-id"
SIM_API_SECRET = "chaos-sim-api-secret-value"
STOP_GRACE_S = 15.0

# Compressed times: every one of them is a PHONEBRIDGE_* setting a user can set the same way.
STACK_SETTINGS: dict[str, str] = {
    "PHONEBRIDGE_UPSTREAM_API_ID": SIM_API_ID,
    "PHONEBRIDGE_UPSTREAM_API_SECRET": SIM_API_SECRET,
    "PHONEBRIDGE_UPSTREAM_TIMEOUT_S": "1",
    "PHONEBRIDGE_UPSTREAM_MAX_RPS": "400",
    "PHONEBRIDGE_TASK_TTL_S": "120",
    "PHONEBRIDGE_POLL_INITIAL_S": "0.2",
    "PHONEBRIDGE_POLL_MAX_S": "1",
    "PHONEBRIDGE_WEBHOOK_TIMEOUT_S": "1",
    "PHONEBRIDGE_WEBHOOK_RETRY_SCHEDULE": "0.2,0.4,0.8,1,1,1,1,1,1,1,1,1",
    "PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE": "true",
    "PHONEBRIDGE_SECRET_KEY": "chaos-secret-key-for-webhook-secrets-at-rest",
    "PHONEBRIDGE_LEASE_S": "3",
    "PHONEBRIDGE_SCHEDULER_TICK_S": "0.1",
    "PHONEBRIDGE_PAUSE_PROBE_S": "0.5",
    "PHONEBRIDGE_METRICS_REFRESH_S": "1",
    "PHONEBRIDGE_LOG_LEVEL": "INFO",
}
# The simulator's call-log labels of injected faults (a slowed answer is "slow:<its label>").
FAULT_LABELS = frozenset(
    {"INTERNAL_ERROR", "RATE_LIMIT_EXCEEDED", "KEY_EXPIRED", "garbage", "html", "empty", "reset"}
)


def is_fault(label: str) -> bool:
    return label in FAULT_LABELS or label.startswith("slow:")


@dataclass
class Service:
    """One long-running command of the stack; it can be killed and started again as it was."""

    spec: ChildSpec
    child: Child | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> None:
        assert not self.running(), f"{self.name} is already running"
        self.child = Child(self.spec)

    def running(self) -> bool:
        return self.child is not None and self.child.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no clean-up runs."""
        assert self.child is not None
        self.child.kill()
        self.child.wait(10.0)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        self.child.send_stop()
        if self.child.wait(grace_s) is None:
            self.child.kill()
            self.child.wait(10.0)

    def log_tail(self, lines: int = 40) -> str:
        path = self.spec.log_path
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    root: Path
    postgres: EmbeddedPostgres
    postgres_service: Service
    redis: EmbeddedRedis
    redis_service: Service
    sim: SimProcess
    env: dict[str, str]
    api_port: int
    services: dict[str, Service] = field(default_factory=dict)

    # --- addresses -----------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def database_conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.postgres.port} user=postgres dbname=phonebridge"

    def logs(self) -> Path:
        return self.root / "logs"

    # --- the infrastructure --------------------------------------------------------------------
    def start_postgres(self) -> None:
        self.postgres_service.start()
        wait_until(self.postgres.accepts_connections, START_TIMEOUT_S, "PostgreSQL to start")

    def stop_postgres(self) -> None:
        """A restart as an operator does one (fast shutdown: clients are disconnected)."""
        self.postgres_service.stop(grace_s=30.0)

    def start_redis(self) -> None:
        self.redis_service.start()
        wait_until(self.redis.answers_ping, START_TIMEOUT_S, "Redis to start")

    def flushall(self) -> None:
        client = redis.Redis.from_url(self.redis.url)
        try:
            client.flushall()
        finally:
            client.close()

    # --- the phonebridge commands --------------------------------------------------------------
    def add_service(self, name: str, *args: str) -> Service:
        spec = ChildSpec(
            name=name,
            argv=phonebridge_command(*args),
            env=self.env,
            tier=Tier.SERVICE,
            log_path=self.logs() / f"{name}.log",
            cwd=self.root,
        )
        service = self.services[name] = Service(spec)
        return service

    def service(self, name: str) -> Service:
        return self.services[name]

    def ensure_running(self) -> None:
        """Start whatever a scenario killed (as a process supervisor would) and wait until the
        API is ready."""
        if not self.postgres_service.running():
            self.start_postgres()
        if not self.redis_service.running():
            self.start_redis()
        for service in self.services.values():
            if not service.running():
                service.start()
        wait_until(self.api_ready, START_TIMEOUT_S, "the API to be ready")

    def api_ready(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def run_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            phonebridge_command(*args),
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    def create_api_key(self, name: str) -> str:
        """A client and its key, made by the function `phonebridge api-key create` calls, in this
        process: the command itself is the e2e tests' business, and starting it cost each chaos
        test a second or two of setup."""
        settings = build_settings(database_url=self.postgres.url)
        return asyncio.run(create_client_and_key(settings, name))

    def crashed(self) -> list[str]:
        """Services that exited on their own (a scenario's kills are restarted by it)."""
        return [
            f"{service.name}: exit {service.child.poll()}\n{service.log_tail()}"
            for service in self.services.values()
            if service.child is not None and service.child.poll() is not None
        ]

    def worker_log_entries(self, events: frozenset[str]) -> list[dict[str, Any]]:
        """The JSON log lines of every worker run so far whose `event` is one of `events`."""
        entries = []
        for path in sorted(self.logs().glob("worker-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                entry = json.loads(line)
                if entry.get("event") in events:
                    entries.append(entry)
        return entries

    def database(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.database_conninfo, autocommit=True)


@contextlib.contextmanager
def running_stack(
    extra_settings: Mapping[str, str] | None = None, *, defaults: frozenset[str] = frozenset()
) -> Iterator[Stack]:
    """Start everything, migrate, and yield the stack; stop everything afterwards. Settings named
    in `defaults` are left unset (their production default applies)."""
    # A private folder, as a root user's would be (under root PostgreSQL's cluster lives elsewhere).
    root = Path(tempfile.mkdtemp(prefix="phonebridge-chaos-"))
    (root / "logs").mkdir()
    postgres = EmbeddedPostgres(root / "data", free_port())
    postgres.prepare()
    redis_server = EmbeddedRedis(root / "data", free_port(), persistent=False)
    redis_server.prepare()
    sim = SimProcess(
        ["--seed", "20261126", "--slow-s", "1.5"],
        env=clean_environment(
            PHONEBRIDGE_UPSTREAM_API_ID=SIM_API_ID,
            PHONEBRIDGE_UPSTREAM_API_SECRET=SIM_API_SECRET,
        ),
        log_path=root / "logs" / "upstream-sim.log",
    )
    stack = Stack(
        root=root,
        postgres=postgres,
        postgres_service=Service(postgres.child()),
        redis=redis_server,
        redis_service=Service(redis_server.child()),
        sim=sim,
        env={},
        api_port=free_port(),
    )
    try:
        stack.start_postgres()
        postgres.ensure_database()
        stack.start_redis()
        sim.start()
        stack.env = clean_environment(
            PHONEBRIDGE_DATABASE_URL=postgres.url,
            PHONEBRIDGE_REDIS_URL=stack.redis.url,
            PHONEBRIDGE_UPSTREAM_BASE_URL=sim.base_url,
            **{
                name: value
                for name, value in {**STACK_SETTINGS, **(extra_settings or {})}.items()
                if name not in defaults
            },
        )
        stack.run_command("migrate")
        stack.add_service("api", "api", "--port", str(stack.api_port))
        stack.add_service("worker-1", "worker")
        stack.add_service("worker-2", "worker")
        stack.add_service("scheduler", "scheduler")
        stack.ensure_running()
        yield stack
    finally:
        # Together, not one after the other: a worker still holding slow calls may take its
        # whole grace period, and the others need not wait for it.
        stop_children(
            [s.child for s in stack.services.values() if s.child is not None], STOP_GRACE_S
        )
        sim.stop()
        stack.redis_service.stop()
        stack.postgres_service.stop()
        remove_embedded_cluster(postgres.data_dir)
        shutil.rmtree(root, ignore_errors=True)
