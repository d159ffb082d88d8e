"""`phonebridge demo` without a terminal: plain lines, every sample task final, every webhook
verified by the built-in receiver, then the API URL, a working key and curl commands."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.run.demo import DONE_MESSAGE, NOT_DONE_MESSAGE, SAMPLE_STATUSES
from tests.support.api import bearer
from tests.support.commands import CliProcess, clean_environment, still_running

# `phonebridge demo` with real servers and processes: about 25 s.
pytestmark = pytest.mark.slow

# Long enough for three PENDING answers at the demo's backoff, short enough to see an expiry.
DEMO_TASK_TTL_S = 12
SAMPLE_COUNT = len(SAMPLE_STATUSES) + 2  # every phone_status, one expiry, one failure


def test_demo_brings_every_sample_task_to_its_final_state_with_verified_webhooks(
    tmp_path: Path, empty_database: str, flushed_redis_url: str
) -> None:
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=empty_database,
        PHONEBRIDGE_REDIS_URL=flushed_redis_url,
        PHONEBRIDGE_DATA_DIR=str(tmp_path / "data"),
        PHONEBRIDGE_SECRET_KEY="e2e-demo-secret-key-for-webhook-secrets",
    )
    demo = CliProcess(["demo", "--port", "0", "--task-ttl", str(DEMO_TASK_TTL_S)], env, tmp_path)
    try:
        # The key and the portal are said as soon as they exist, before any sample task is final.
        early = demo.wait_for(r"phonebridge demo: API key: (pbk_\S+) +portal: (http://\S+/portal)")
        verdict = demo.wait_for(f"{DONE_MESSAGE}|{NOT_DONE_MESSAGE}", timeout_s=90).group(0)
        assert verdict == DONE_MESSAGE, demo.output
        api_key = demo.wait_for(r"^API key: (pbk_\S+)$").group(1)
        api_url = demo.wait_for(r"^API: +(http://\S+)").group(1)
        assert early.groups() == (api_key, f"{api_url}/portal")
        demo.wait_for("Ctrl-C stops everything")
        lines = demo.output.splitlines()
        said_at = next(n for n, line in enumerate(lines) if early.group(0) in line)
        assert not any("-> completed" in line for line in lines[:said_at]), demo.output

        for status, _ in SAMPLE_STATUSES:
            assert any(f"-> completed ({status})" in line for line in lines), status
        assert any("sim-never-" in line and "-> expired" in line for line in lines)
        assert any("sim-invalid-" in line and "-> failed" in line for line in lines)
        verified = [line for line in lines if line.endswith(": signature verified")]
        assert len(verified) == SAMPLE_COUNT
        assert not any("NOT verified" in line for line in lines)
        assert sum(1 for line in lines if line.lstrip().startswith("curl ")) >= 5

        # The printed key and URL work as printed.
        response = httpx.get(
            f"{api_url}/v1/events",
            headers=bearer(api_key),
            params={"limit": 100},
            timeout=10.0,
        )
        assert response.status_code == 200
        assert len(response.json()["data"]) == SAMPLE_COUNT

        # Each webhook is shown once, by the view; the receiver's own lines go to its log file.
        assert "receiver.webhook" not in demo.stderr_path.read_text()
        receiver_log = tmp_path / "data" / "logs" / "demo-receiver.log"
        assert receiver_log.read_text().count('"receiver.webhook"') >= SAMPLE_COUNT

        started = demo.descendants()
        assert demo.interrupt() == 0, demo.stderr_tail()
        assert still_running(started) == []
    finally:
        demo.kill_everything()
