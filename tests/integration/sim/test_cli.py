"""`phonebridge upstream-sim` started as a user starts it, in a child process."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from service.cli import build_parser
from service.config import ConfigError
from service.sim.command import options_from
from service.sim.server import SimProcess, phonebridge_executable
from tests.support.upstream import SUBMIT, TASK_RESULT

CLI_ID = "cli-api-id-4417"
CLI_SECRET = "cli-api-secret-93f1c2"
CREDENTIALS = {"X-DF-API-ID": CLI_ID, "X-DF-API-SECRET": CLI_SECRET}


def test_cli_serves_with_its_options_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    log_path = tmp_path / "sim.log"
    options = ["--api-id", CLI_ID, "--api-secret", CLI_SECRET, "--task-ttl", "0.6"]
    sim = SimProcess([*options, "--submit-script", "busy-1", "--seed", "9"], log_path=log_path)
    sim.start()
    try:
        with httpx.Client(base_url=sim.base_url, headers=CREDENTIALS, timeout=5) as client:
            task_id = client.post(SUBMIT, json={"phone_number": "525512345678"}).json()["task_id"]
            assert task_id.startswith("sim-busy-1-")
            first = client.post(TASK_RESULT, json={"task_id": task_id})
            second = client.post(TASK_RESULT, json={"task_id": task_id})
            assert (first.status_code, first.json()["status"]) == (400, "PENDING")
            assert second.json()["result"] == {
                "phone_number": "5255********",
                "phone_status": "busy",
            }
            wrong = client.post(
                TASK_RESULT, json={"task_id": task_id}, headers={"X-DF-API-SECRET": "nope"}
            )
            assert wrong.status_code == 401
            expires_at = sim.control.task(task_id)["expires_at"]
            time.sleep(max(expires_at - time.time(), 0))  # the --task-ttl validity runs out
            expired = client.post(TASK_RESULT, json={"task_id": task_id}).json()
            assert expired["status"] == "INVALID_ARGUMENT"
        assert sim.control.stats()["calls"] == 5
    finally:
        exit_code = sim.stop(signal.SIGTERM)
    assert exit_code == 0
    log = log_path.read_text()
    assert '"event": "sim.started"' in log
    assert CLI_SECRET not in log
    assert CLI_ID not in log


def test_cli_fault_options_and_scripts_that_survive_a_crash(tmp_path: Path) -> None:
    options = ["--api-id", CLI_ID, "--api-secret", CLI_SECRET, "--force", "key_expired"]
    sim = SimProcess([*options, "--fault", "html=1.0"])
    sim.start()
    try:
        with httpx.Client(base_url=sim.base_url, headers=CREDENTIALS, timeout=5) as client:
            response = client.post(TASK_RESULT, json={"task_id": "sim-ring-1-crash"})
            assert response.json()["status"] == "KEY_EXPIRED"
            sim.control.force(None)
            assert client.post(TASK_RESULT, json={"task_id": "sim-ring-1-crash"}).status_code == 502
    finally:
        assert sim.stop(signal.SIGKILL) == -signal.SIGKILL
    port = int(sim.base_url.rsplit(":", 1)[1])
    # A restarted simulator knows nothing, yet the task_id still carries its script.
    with (
        SimProcess(["--api-id", CLI_ID, "--api-secret", CLI_SECRET], port=port) as restarted,
        httpx.Client(base_url=restarted.base_url, headers=CREDENTIALS, timeout=5) as client,
    ):
        assert restarted.base_url == sim.base_url
        answers = [
            client.post(TASK_RESULT, json={"task_id": "sim-ring-1-crash"}).json()["status"]
            for _ in range(2)
        ]
        assert answers == ["PENDING", "OK"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--fault", "html=0.7", "--fault", "empty=0.5"], "--fault: fault probabilities"),
        (["--submit-script", "rang-1"], "--submit-script: unknown script"),
    ],
)
def test_options_that_do_not_fit_together_are_a_config_error(
    options: list[str], message: str
) -> None:
    args = build_parser().parse_args(["upstream-sim", *options])
    with pytest.raises(ConfigError, match=message):
        options_from(args, now=0.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--fault", "lightning=0.1"], "expected MODE=PROBABILITY"),
        (["--fault", "html"], "expected MODE=PROBABILITY"),
        (["--task-ttl", "0"], "must be greater than 0"),
        (["--force", "sometimes"], "invalid FaultMode value"),
    ],
)
def test_unusable_option_values_are_refused_by_the_parser(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["upstream-sim", *options])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unusable_options_exit_the_real_command_with_code_2() -> None:
    result = subprocess.run(
        [phonebridge_executable(), "upstream-sim", "--port", "0", "--fault", "html=2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "phonebridge: upstream-sim: --fault: probability of html must be between 0 and 1"
    ]
    assert result.stdout == ""
