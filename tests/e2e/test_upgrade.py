"""An upgrade without downtime, as docs/operations.md ("Upgrading") says to run one: the previous
release (the commit before the newest migration, from this repository's history; see
tests/support/releases.py) runs its API, worker and scheduler; the new release's `migrate` runs
under them; the new API starts beside the old one and takes traffic while the old API stops; and
the previous release's worker and scheduler go on polling, against the migrated schema, the tasks
registered through both APIs, and deliver them to a real receiver.

Nothing fails (no error line from the old worker or scheduler, none of them exits) and nothing is
lost (every task completes, and its `task.completed` webhook reaches the receiver exactly once,
signed with the subscription's secret).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from service.domain.signing import verify_signature
from service.run.processes import free_port
from service.sim.server import SimProcess, phonebridge_executable
from tests.support.api import bearer
from tests.support.commands import CliProcess, clean_environment, create_api_key
from tests.support.receivers import Receiver
from tests.support.releases import (
    Release,
    head_revision_of,
    newest_migration,
    previous_release_commit,
    unpack_release,
)
from tests.support.waiting import wait_until

# Four phonebridge processes of two releases, the simulator, two migrations: 65-80 s on the shared
# 2-core machine at load 10, most of it processes starting.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

API_ID = "upgrade-e2e-upstream-id"
API_SECRET = "upgrade-e2e-upstream-secret"
SECRET_KEY = "upgrade-e2e-key-for-webhook-secrets-at-rest"
# Registered through the old API before the migration: pending for ~4 s, so their polls span it.
BEFORE = [f"sim-ring-4s-before-{i}" for i in range(6)]
# Registered through the new API while both APIs serve, then through it alone.
BESIDE = [f"sim-busy-2-beside-{i}" for i in range(6)]
AFTER = [f"sim-connected-1-after-{i}" for i in range(6)]
HOOK = "/upgrade-hook"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    args = ["--api-id", API_ID, "--api-secret", API_SECRET, "--seed", "26"]
    with SimProcess(args, log_path=tmp_path / "sim.log") as process:
        yield process


@pytest.fixture
def previous(tmp_path: Path) -> Release:
    return unpack_release(previous_release_commit(), tmp_path / "previous")


def old_process(release: Release, env: dict[str, str], *args: str) -> CliProcess:
    """A long-running command of the previous release, run from its own tree."""
    return CliProcess(
        ["-m", "service.cli", *args],
        release.environment(env),
        release.tree,
        executable=sys.executable,
    )


def stop(process: CliProcess) -> None:
    """SIGTERM, as an orchestrator stops a process in a rolling deploy."""
    if process.process.poll() is None:
        process.process.send_signal(signal.SIGTERM)
        try:
            process.process.wait(timeout=30)
        finally:
            process.kill_everything()


def register(api_url: str, key: str, task_ids: list[str]) -> None:
    with httpx.Client(base_url=api_url, headers=bearer(key), timeout=10.0) as api:
        for task_id in task_ids:
            answer = api.post("/v1/tasks", json={"task_id": task_id})
            assert answer.status_code == 201, answer.text


def ready(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/readyz", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def error_lines(process: CliProcess) -> list[str]:
    """The JSON log lines at ERROR or above, on stdout or stderr."""
    lines = process.output.splitlines() + process.stderr_path.read_text().splitlines()
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("ERROR", "CRITICAL"):
            found.append(line)
    return found


def test_the_previous_worker_and_scheduler_serve_the_new_api_across_the_migration(
    tmp_path: Path,
    empty_database: str,
    flushed_redis_url: str,
    sim: SimProcess,
    previous: Release,
    receiver: Receiver,
) -> None:
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=empty_database,
        PHONEBRIDGE_REDIS_URL=flushed_redis_url,
        PHONEBRIDGE_UPSTREAM_BASE_URL=sim.base_url,
        PHONEBRIDGE_UPSTREAM_API_ID=API_ID,
        PHONEBRIDGE_UPSTREAM_API_SECRET=API_SECRET,
        PHONEBRIDGE_SECRET_KEY=SECRET_KEY,
        PHONEBRIDGE_POLL_INITIAL_S="0.2",
        PHONEBRIDGE_POLL_MAX_S="0.5",
        PHONEBRIDGE_SCHEDULER_TICK_S="0.05",
        PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE="true",
        PHONEBRIDGE_WEBHOOK_RETRY_SCHEDULE="0.2,0.5,1,1,1",
        PHONEBRIDGE_LOG_LEVEL="INFO",
    )
    old_env = previous.environment(env)
    old_port, new_port = free_port(), free_port()
    old_url, new_url = f"http://127.0.0.1:{old_port}", f"http://127.0.0.1:{new_port}"
    processes: dict[str, CliProcess] = {}
    try:
        # The previous release, as it ran before the upgrade.
        run_once(previous.command("migrate"), old_env, previous.tree)
        old_head = head_revision_of(previous)
        assert schema_revision(empty_database) == old_head != newest_migration()[0]
        processes["old api"] = old_process(previous, env, "api", "--port", str(old_port))
        processes["old worker"] = old_process(previous, env, "worker")
        processes["old scheduler"] = old_process(previous, env, "scheduler")
        wait_until(lambda: ready(old_url), 90, "the previous release's API")
        key = create_api_key(old_env, previous.tree, "upgrade")
        with httpx.Client(base_url=old_url, headers=bearer(key), timeout=10.0) as api:
            created = api.post(
                "/v1/subscriptions",
                json={"url": receiver.url(HOOK), "event_types": ["task.completed"]},
            )
            assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        register(old_url, key, BEFORE)

        # The new release's migration, under the running previous release.
        run_once([phonebridge_executable(), "migrate"], env, tmp_path)
        assert schema_revision(empty_database) == newest_migration()[0]

        # The new API beside the old one, then alone.
        processes["new api"] = CliProcess(["api", "--port", str(new_port)], env, tmp_path)
        wait_until(lambda: ready(new_url), 90, "the new release's API")
        register(new_url, key, BESIDE)
        stop(processes.pop("old api"))
        register(new_url, key, AFTER)

        every_task = BEFORE + BESIDE + AFTER
        try:
            wait_until(
                lambda: len(delivered_tasks(receiver)) >= len(every_task),
                90,
                "every task's webhook",
            )
        except AssertionError as missing:
            failed = {
                name: error_lines(processes[name]) for name in ("old worker", "old scheduler")
            }
            raise AssertionError(f"{missing}; the previous release logged: {failed}") from None
        with httpx.Client(base_url=new_url, headers=bearer(key), timeout=10.0) as api:
            for task_id in every_task:
                task = api.get(f"/v1/tasks/{task_id}").json()
                assert task["state"] == "completed", task
        webhooks = receiver.received(HOOK)
        assert sorted(delivered_tasks(receiver)) == sorted(every_task)
        assert len({request.headers["webhook-id"] for request in webhooks}) == len(every_task)
        now = datetime.now(UTC)
        for request in webhooks:
            assert verify_signature(secret, request.headers, request.body, now)

        for name in ("old worker", "old scheduler"):
            process = processes[name]
            assert process.process.poll() is None, f"{name} exited:\n{process.stderr_tail()}"
            assert error_lines(process) == [], name
        assert error_lines(processes["new api"]) == []
    finally:
        for process in processes.values():
            stop(process)


def delivered_tasks(receiver: Receiver) -> list[str]:
    """The task_id of every webhook the receiver took (repeats kept)."""
    return [json.loads(request.body)["data"]["task_id"] for request in receiver.received(HOOK)]


def run_once(command: list[str], env: dict[str, str], cwd: Path) -> None:
    """A one-shot command (a migration, a key), which must succeed."""
    finished = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert finished.returncode == 0, f"{command} exited {finished.returncode}: {finished.stderr}"


def schema_revision(database_url: str) -> str:
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None
    return str(row[0])
