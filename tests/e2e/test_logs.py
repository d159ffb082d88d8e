"""The logs of real processes (api, worker, scheduler, the upstream simulator) driven through
errors: upstream 500s, an account error that pauses polling, a receiver that fails attempts,
checks submitted (and refused) with upstream calling back. Every line any of them writes is one
JSON object, the meaningful events carry their ids, and no credential, API key, webhook secret or
phone number shows up anywhere, in any encoding we could leak it in."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.run.processes import free_port
from service.sim.server import SimProcess, phonebridge_executable
from tests.support.api import bearer
from tests.support.commands import (
    CliProcess,
    clean_environment,
    create_api_key,
    run_command,
    wait_for_task_state,
)
from tests.support.receivers import Receiver, Reply
from tests.support.waiting import wait_until

# Real api, worker, scheduler and simulator processes: about 18 s.
pytestmark = pytest.mark.slow

API_ID = "logs-e2e-upstream-id-7c1f"
API_SECRET = "logs-e2e-upstream-secret-93ad0b"
SECRET_KEY = "logs-e2e-key-for-webhook-secrets-at-rest-5e2a"
TASKS = 6
# Submitted through POST /v1/checks: one finishing after a callback, one refused upstream
# (INVALID_ARGUMENT: Bogotá's old 8-digit form, possible but no longer valid), one refused by
# phonebridge itself (too long), one met by a 500. All as upstream is sent them (normalised).
PHONE_NUMBERS = ("525587654321", "5718765432", "52155876543219876", "528187654321")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    args = ["--api-id", API_ID, "--api-secret", API_SECRET, "--seed", "7"]
    with SimProcess(args, log_path=tmp_path / "sim.log") as process:
        yield process


def stop(process: CliProcess) -> None:
    """SIGTERM, as a supervisor or an orchestrator stops a process."""
    process.process.send_signal(signal.SIGTERM)
    try:
        process.process.wait(timeout=30)
    finally:
        process.kill_everything()


def forbidden_strings(api_key: str, webhook_secret: str) -> dict[str, str]:
    """Each secret, and the forms it could leak in: base64 (an Authorization header, a dumped
    body), the key part of whsec_ and that key's bytes as hex; each phone number, whole and
    without its country code (the masked form keeps only the code and the last four digits)."""
    key_part = webhook_secret.removeprefix("whsec_")
    found = {
        "upstream api id": API_ID,
        "upstream api secret": API_SECRET,
        "api key": api_key,
        "webhook secret": webhook_secret,
        "webhook secret key part": key_part,
        "webhook secret key bytes": base64.b64decode(key_part).hex(),
        "secret key": SECRET_KEY,
    }
    for index, number in enumerate(PHONE_NUMBERS):
        found[f"phone number {index}"] = number
        found[f"phone number {index} without country code"] = number[2:]
    for name, value in list(found.items()):
        found[f"{name} (base64)"] = base64.b64encode(value.encode()).decode().rstrip("=")
    return found


def test_every_log_line_is_json_with_ids_and_without_secrets_through_errors(
    tmp_path: Path,
    empty_database: str,
    flushed_redis_url: str,
    sim: SimProcess,
    receiver: Receiver,
) -> None:
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=empty_database,
        PHONEBRIDGE_REDIS_URL=flushed_redis_url,
        PHONEBRIDGE_UPSTREAM_BASE_URL=sim.base_url,
        PHONEBRIDGE_UPSTREAM_API_ID=API_ID,
        PHONEBRIDGE_UPSTREAM_API_SECRET=API_SECRET,
        PHONEBRIDGE_SECRET_KEY=SECRET_KEY,
        PHONEBRIDGE_UPSTREAM_TIMEOUT_S="2",
        PHONEBRIDGE_POLL_INITIAL_S="0.2",
        PHONEBRIDGE_POLL_MAX_S="0.5",
        PHONEBRIDGE_PAUSE_PROBE_S="0.5",
        PHONEBRIDGE_SCHEDULER_TICK_S="0.05",
        PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE="true",
        PHONEBRIDGE_WEBHOOK_RETRY_SCHEDULE="0.2,0.2,0.2,0.2",
        PHONEBRIDGE_HINTED_POLL_INITIAL_S="30",
        # Everything, debug lines included, must keep secrets out.
        PHONEBRIDGE_LOG_LEVEL="DEBUG",
    )
    one_shots = [
        subprocess.run(
            [phonebridge_executable(), "migrate"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    ]
    api_key = create_api_key(env, tmp_path, "logs-e2e")
    # The key commands: a second key (printed alone on stdout, by design: only its stderr is
    # searched), the listing, limits, and later a revocation.
    added = run_command(env, tmp_path, "api-key", "add", "--client", "logs-e2e")
    second_key = added.stdout.strip().splitlines()[-1]
    one_shots.append(subprocess.CompletedProcess(added.args, added.returncode, "", added.stderr))
    one_shots.append(
        run_command(
            env,
            tmp_path,
            "api-key",
            "limits",
            "--client",
            "logs-e2e",
            "--max-rps",
            "1000",
            "--max-pending",
            "1000",
        )
    )
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    env["PHONEBRIDGE_PUBLIC_URL"] = api_url
    processes = {
        "api": CliProcess(["api", "--port", str(port)], env, tmp_path),
        "worker": CliProcess(["worker"], env, tmp_path),
        "scheduler": CliProcess(["scheduler"], env, tmp_path),
    }
    headers = bearer(api_key)
    task_ids = [f"sim-ring-2-logs-{i}" for i in range(TASKS)]
    try:
        with httpx.Client(base_url=api_url, headers=headers, timeout=10.0) as api:
            wait_until(lambda: _answers(api), 60, "the API")
            receiver.script("/logs-hook", Reply(status=500), Reply(status=503), Reply(status=400))
            created = api.post("/v1/subscriptions", json={"url": receiver.url("/logs-hook")})
            assert created.status_code == 201, created.text
            webhook_secret = created.json()["secret"]
            assert (
                api.get("/v1/tasks/x", headers={"authorization": "Bearer wrong"}).status_code == 401
            )
            assert api.get("/v1/tasks", headers=bearer(second_key)).status_code == 200
            one_shots.append(run_command(env, tmp_path, "api-key", "list"))
            revoked_id = one_shots[-1].stdout.strip().splitlines()[-1].split("\t")[0]
            one_shots.append(run_command(env, tmp_path, "api-key", "revoke", revoked_id))
            wait_until(
                lambda: api.get("/v1/tasks", headers=bearer(second_key)).status_code == 401,
                10,
                "the revoked key to be refused",
            )

            # Account problems pause polling, and 500s interleave with real answers.
            sim.control.force("key_expired", calls=3)
            sim.control.set_faults(probabilities={"internal_error": 0.3})
            for task_id in task_ids:
                assert api.post("/v1/tasks", json={"task_id": task_id}).status_code == 201
            for task_id in task_ids:
                wait_for_task_state(api_url, api_key, task_id, "completed", timeout_s=60)

            # Checks: one answered after upstream's callback, the others refused or lost.
            sim.control.replace_faults()
            sim.control.configure(submit_script="ring-0-1s")
            submitted = api.post("/v1/checks", json={"phone_number": PHONE_NUMBERS[0]})
            assert submitted.status_code == 201, submitted.text
            refused = api.post("/v1/checks", json={"phone_number": PHONE_NUMBERS[1]})
            assert refused.status_code == 422
            invalid = api.post("/v1/checks", json={"phone_number": PHONE_NUMBERS[2]})
            assert invalid.status_code == 422
            sim.control.force("internal_error", calls=1)
            unknown = api.post("/v1/checks", json={"phone_number": PHONE_NUMBERS[3]})
            assert unknown.status_code == 502
            wait_for_task_state(
                api_url, api_key, submitted.json()["task_id"], "completed", timeout_s=20
            )
        wait_until(
            lambda: sum(r.path == "/logs-hook" for r in receiver.received()) >= TASKS + 3,
            30,
            "the webhooks",
        )
    finally:
        for process in processes.values():
            stop(process)
    sim.stop()

    streams: dict[str, str] = {"sim stderr": (tmp_path / "sim.log").read_text()}
    for name, process in processes.items():
        streams[f"{name} stdout"] = process.output
        streams[f"{name} stderr"] = process.stderr_path.read_text()
    for index, finished in enumerate(one_shots):
        # One-shot commands talk to a person; only their secrets matter.
        streams[f"one-shot {index}"] = finished.stdout + finished.stderr

    for name, content in streams.items():
        forbidden = forbidden_strings(api_key, webhook_secret) | {
            f"second {name}": value
            for name, value in forbidden_strings(second_key, webhook_secret).items()
            if "api key" in name
        }
        for secret_name, secret in forbidden.items():
            assert secret not in content, f"{secret_name} appears in {name}"

    entries: list[dict[str, Any]] = []
    for name, content in streams.items():
        if name.startswith("one-shot"):
            continue
        for line in content.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"not JSON in {name}: {line[:300]}") from None
            assert isinstance(entry, dict), f"not an object in {name}: {line[:300]}"
            assert {"ts", "level", "event"} <= entry.keys(), line
            entries.append(entry)

    by_event: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_event.setdefault(entry["event"], []).append(entry)
    completed = by_event.get("poll.completed", [])
    assert {e["task_id"] for e in completed} >= set(task_ids)
    assert all(str(e["request_id"]).startswith("TID") for e in completed), completed[:2]
    assert by_event.get("upstream.paused"), sorted(by_event)
    assert by_event.get("upstream.resumed"), sorted(by_event)
    assert any(e.get("outcome") == "transient" for e in by_event.get("poll.retry", []))
    failed_attempts = by_event.get("webhook.attempt_failed", [])
    assert len(failed_attempts) >= 3
    assert all(e["event_id"].startswith("evt_") for e in failed_attempts)
    assert {e["outcome"] for e in by_event.get("check.submitted", [])} >= {
        "pending",
        "rejected",
        "unknown",
    }


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
