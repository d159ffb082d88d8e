"""Submitted checks with real processes: a `phonebridge api` killed between upstream's answer and
its commit (the client then sees SUBMIT_OUTCOME_UNKNOWN, never a second submit), and the whole
stack with upstream's callbacks lost, duplicated and forged (every check completes; a delivered
callback makes the answer arrive within about a second)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from service.checks.submit import CRASH_AFTER_SUBMIT_VARIABLE
from service.run.processes import free_port
from service.sim.server import SimProcess, phonebridge_executable
from tests.support.commands import CliProcess, create_api_key, upstream_environment
from tests.support.waiting import wait_until

# Real api, worker, scheduler and simulator processes: about 40 s.
pytestmark = pytest.mark.slow

API_ID = "checks-e2e-upstream-id"
API_SECRET = "checks-e2e-upstream-secret"
CHECKS = 20


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    args = ["--api-id", API_ID, "--api-secret", API_SECRET, "--seed", "12"]
    with SimProcess(args, log_path=tmp_path / "sim.log") as process:
        yield process


def stack_env(database_url: str, redis_url: str, sim: SimProcess, **extra: str) -> dict[str, str]:
    return upstream_environment(
        database_url,
        redis_url,
        sim.base_url,
        PHONEBRIDGE_UPSTREAM_API_ID=API_ID,
        PHONEBRIDGE_UPSTREAM_API_SECRET=API_SECRET,
        PHONEBRIDGE_UPSTREAM_TIMEOUT_S="1",
        PHONEBRIDGE_SCHEDULER_TICK_S="0.05",
        PHONEBRIDGE_LEASE_S="4",
        **extra,
    )


def migrate(env: dict[str, str], cwd: Path) -> None:
    subprocess.run([phonebridge_executable(), "migrate"], env=env, cwd=cwd, check=True, timeout=60)


def start_api(env: dict[str, str], cwd: Path, port: int) -> CliProcess:
    api = CliProcess(["api", "--port", str(port)], env, cwd)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(url), 60, "the API to answer")
    return api


def stop(process: CliProcess) -> None:
    if process.process.poll() is None:
        process.process.send_signal(signal.SIGTERM)
        try:
            process.process.wait(timeout=30)
        finally:
            process.kill_everything()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def submission_states(database_url: str) -> list[str]:
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        return [row[0] for row in conn.execute("SELECT state FROM check_submissions")]


def test_an_api_killed_between_upstreams_answer_and_the_commit_leaves_an_unknown_outcome(
    tmp_path: Path, empty_database: str, flushed_redis_url: str, sim: SimProcess
) -> None:
    env = stack_env(empty_database, flushed_redis_url, sim)
    migrate(env, tmp_path)
    key = create_api_key(env, tmp_path, "killed")
    sim.control.configure(submit_script="ring-0-60s")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "order-42"}
    body = {"phone_number": "525512341234"}

    doomed = start_api({**env, CRASH_AFTER_SUBMIT_VARIABLE: "1"}, tmp_path, port)
    try:
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{url}/v1/checks", json=body, headers=headers, timeout=30)
        assert doomed.process.wait(timeout=10) == -signal.SIGKILL
    finally:
        stop(doomed)
    # Upstream took the check; phonebridge's record says it does not know the outcome yet.
    assert len(sim.control.calls(endpoint="submit")) == 1
    assert submission_states(empty_database) == ["submitting"]

    api = start_api(env, tmp_path, port)
    try:
        started = time.monotonic()
        retried = httpx.post(f"{url}/v1/checks", json=body, headers=headers, timeout=30)
        again = httpx.post(f"{url}/v1/checks", json=body, headers=headers, timeout=30)
        waited = time.monotonic() - started
    finally:
        stop(api)

    assert retried.status_code == 502, retried.text
    assert retried.json()["code"] == "SUBMIT_OUTCOME_UNKNOWN"
    assert again.status_code == 502
    assert again.json() == retried.json()
    assert waited < 15  # the dead request's lease: the timeout plus the slot wait and a margin
    assert len(sim.control.calls(endpoint="submit")) == 1
    assert submission_states(empty_database) == ["unknown"]


def test_checks_complete_whatever_happens_to_their_callbacks(
    tmp_path: Path, empty_database: str, flushed_redis_url: str, sim: SimProcess
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = stack_env(
        empty_database,
        flushed_redis_url,
        sim,
        PHONEBRIDGE_PUBLIC_URL=url,
        PHONEBRIDGE_HINTED_POLL_INITIAL_S="4",
        PHONEBRIDGE_POLL_INITIAL_S="2",
        PHONEBRIDGE_POLL_MAX_S="4",
        PHONEBRIDGE_HINT_MIN_INTERVAL_S="2",
    )
    migrate(env, tmp_path)
    key = create_api_key(env, tmp_path, "callbacks")
    sim.control.configure(submit_script="ring-0-1s")
    sim.control.set_callbacks(lose=0.3, duplicate=0.3, forge=0.3)
    api = start_api(env, tmp_path, port)
    worker = CliProcess(["worker"], env, tmp_path)
    scheduler = CliProcess(["scheduler"], env, tmp_path)
    try:
        # The promise is about a running engine: checks submitted before the worker and the
        # scheduler are up would wait for them, not for their callback.
        wait_until(
            lambda: logged(worker, " ready.") and logged(scheduler, "scheduler.started"),
            60,
            "the worker and the scheduler to start",
        )
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            task_ids = []
            for index in range(CHECKS):
                answer = client.post("/v1/checks", json={"phone_number": f"52155{index:08d}"})
                assert answer.status_code == 201, answer.text
                task_ids.append(answer.json()["task_id"])

            def all_completed() -> list[dict[str, object]] | None:
                tasks = [client.get(f"/v1/tasks/{t}").json() for t in task_ids]
                return tasks if all(t["state"] == "completed" for t in tasks) else None

            tasks = wait_until(all_completed, 60, "every check to complete", interval_s=0.5)
    finally:
        for process in (scheduler, worker, api):
            stop(process)

    log = sim.control.callback_log()
    completed_at = {
        t["task_id"]: datetime.fromisoformat(str(t["completed_at"])).timestamp() for t in tasks
    }
    delivered = {c["task_id"]: c["sent_at"] for c in log if c["kind"] == "callback"}
    lost = {c["task_id"] for c in log if c["kind"] == "lost"}
    forged = {c["task_id"] for c in log if c["kind"] == "forged"}
    assert lost, "the simulator lost no callback: the test proves nothing"
    assert forged
    assert set(delivered) | lost == set(task_ids)
    for task_id, sent_at in delivered.items():
        # A delivered callback: polled within about a second (a forged one just before it
        # defers it to the interval's end, 2 s after the forgery).
        limit = 2.5 if task_id in forged else 1.5
        assert completed_at[task_id] - sent_at < limit, task_id
    for task_id in task_ids:
        polls = len(sim.control.calls(task_id=task_id, endpoint="task_result"))
        # A forged hint costs one early poll at most; the interval rule holds the rest.
        assert polls <= (3 if task_id in forged else 2), (task_id, polls)


def logged(process: CliProcess, text: str) -> bool:
    """Whether the process's log (its stderr) holds `text` yet."""
    return text in process.stderr_path.read_text(errors="replace")
