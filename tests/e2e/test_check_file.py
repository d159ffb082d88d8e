"""`phonebridge check-file`, run as a user runs it, against a real `phonebridge up` on the
upstream simulator: a small CSV with a duplicate and a line that is no phone number becomes one
check job; Ctrl-C leaves it running and `--job ID` waits for it again; the same file sent again
finds the same job; the results CSV has one row per accepted line, in input order, with the
verdicts the simulator's scripts give. A draft (made with `start=false`) named with `--job` is
started, then waited for.

Needs the check jobs API (`POST /v1/check-jobs`, lane `jobs` of issue 23): until it is merged
the create answers 404 and this test fails at its first step."""

from __future__ import annotations

import csv
import io
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from service.client.check_file import API_KEY_VARIABLE
from service.domain.check_file import ExitCode
from service.domain.job_results import RESULT_COLUMNS
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES, PhoneNumber, parse_phone_number
from service.sim.server import SimServer, phonebridge_executable
from tests.support.commands import (
    STOP_TIMEOUT_S,
    CliProcess,
    clean_environment,
    create_api_key,
)

# `phonebridge up` and the command, real processes: about 20 s.
pytestmark = pytest.mark.slow

API_LINE = r"API listening on (http://\S+)"
# (number as written, reference, the simulator's script for it, the verdict it ends with). Made
# up numbers of this test's own, so the session's simulator scripts no other test's.
LINES = (
    ("+52 55 1234 7001", "first", "ring-0-500ms", "live"),
    ("+57 300 123 7002", "second", "empty-0-500ms", "dead"),
    ("52 55 1234 7001", "dup-of-first", None, "live"),  # line 1's number: a duplicate
    ("not a number", "bad", None, None),  # rejected: never submitted, no result row
    # Ready only after a few seconds: the job is still running when the test presses Ctrl-C.
    ("+52 33 1234 7003", "third", "turned_off-0-6s", "unreachable"),
)
# The draft's one number, made through the REST API with start=false.
DRAFT_NUMBER = ("+52 55 1234 7004", "ring-0-500ms")


def digits(written: str) -> str:
    number = parse_phone_number(written, DEFAULT_CHECK_COUNTRIES)
    assert isinstance(number, PhoneNumber), written
    return number.digits


def write_csv(path: Path) -> None:
    rows = ["phone_number,reference"] + [f'"{n}",{r}' for n, r, _, _ in LINES]
    path.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")


def check_file(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [phonebridge_executable(), "check-file", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_file_runs_a_csv_as_a_job_survives_ctrl_c_and_writes_results_in_input_order(
    tmp_path: Path,
    empty_database: str,
    flushed_redis_url: str,
    upstream_env: dict[str, str],
    upstream_sim: SimServer,
) -> None:
    for written, _, script, _ in LINES:
        if script is not None:
            upstream_sim.control.script_number(digits(written), script)
    upstream_sim.control.script_number(digits(DRAFT_NUMBER[0]), DRAFT_NUMBER[1])
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=empty_database,
        PHONEBRIDGE_REDIS_URL=flushed_redis_url,
        PHONEBRIDGE_DATA_DIR=str(tmp_path / "data"),
        **upstream_env,
    )
    up = CliProcess(["up", "--port", "0"], env, tmp_path)
    try:
        api_url = up.wait_for(API_LINE).group(1)
        api_key = create_api_key(env, tmp_path, "e2e-check-file")
        client_env = clean_environment(**{API_KEY_VARIABLE: api_key})
        source = tmp_path / "list.csv"
        write_csv(source)
        out = tmp_path / "results.csv"

        # Ctrl-C while the job runs: it keeps running, and the command says how to wait again.
        first = CliProcess(
            ["check-file", str(source), "--out", str(out), "--url", api_url], client_env, tmp_path
        )
        job_id = first.wait_for(r"list.csv is job (job_\S+)$").group(1)
        first.wait_for(r"1 line was rejected \(never submitted\): GET \S+/rejections")
        first.process.send_signal(signal.SIGINT)
        assert first.process.wait(timeout=STOP_TIMEOUT_S) == ExitCode.INTERRUPTED
        hint = first.stderr_path.read_text()
        assert f"job {job_id} keeps running" in hint, hint
        resume = re.search(r"phonebridge check-file .* --job (job_\S+)", hint)
        assert resume is not None
        assert resume.group(1) == job_id
        assert not out.exists()

        # --job waits for it to the end.
        finished = check_file(
            client_env, tmp_path, str(source), "--out", str(out), "--url", api_url, "--job", job_id
        )
        assert finished.returncode == ExitCode.RESULTS_WRITTEN, finished.stderr
        assert f"job {job_id} completed" in finished.stdout
        assert "results written to" in finished.stdout
        results = out.read_bytes()

        # The same file again finds the job it made (its Idempotency-Key is the file's digest):
        # the same results, and nothing submitted twice.
        out.unlink()
        again = check_file(client_env, tmp_path, str(source), "--out", str(out), "--url", api_url)
        assert again.returncode == ExitCode.RESULTS_WRITTEN, again.stderr
        assert f"list.csv is job {job_id}" in again.stdout
        assert out.read_bytes() == results

        rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
        assert tuple(rows[0]) == RESULT_COLUMNS
        accepted = [(n, line) for line, n in enumerate(LINES, start=1) if n[3] is not None]
        assert [int(row["line"]) for row in rows] == [line for _, line in accepted]
        assert [row["reference"] for row in rows] == [n[1] for n, _ in accepted]
        assert [row["verdict"] for row in rows] == [n[3] for n, _ in accepted]
        assert {row["state"] for row in rows} == {"completed"}
        assert "bad" not in {row["reference"] for row in rows}
        first_row, duplicate = rows[0], rows[2]
        assert duplicate["task_id"] == first_row["task_id"]
        assert duplicate["phone_status"] == first_row["phone_status"] == "ring"
        # One upstream submit per distinct number: the duplicate cost nothing.
        assert upstream_sim.control.number(digits(LINES[0][0]))["submits"] == 1
        assert all("*" in row["phone_number_masked"] for row in rows)
        assert not list(tmp_path.glob(".results.csv.*.part"))

        # A draft named with --job is started, as the command starts a job it creates, then
        # waited for.
        draft = httpx.post(
            f"{api_url}/v1/check-jobs",
            params={"start": "false"},
            content=f"phone_number\r\n{DRAFT_NUMBER[0]}\r\n".encode(),
            headers={"authorization": f"Bearer {api_key}", "content-type": "text/csv"},
            trust_env=False,
        )
        assert draft.status_code == 201, draft.text
        draft_id = draft.json()["id"]
        assert draft.json()["state"] == "draft"
        draft_out = tmp_path / "draft-results.csv"
        started = check_file(
            client_env,
            tmp_path,
            str(source),
            "--out",
            str(draft_out),
            "--url",
            api_url,
            "--job",
            draft_id,
        )
        assert started.returncode == ExitCode.RESULTS_WRITTEN, started.stderr
        assert f"job {draft_id} was a draft: started it (1 number to submit)" in started.stdout
        draft_rows = list(csv.DictReader(io.StringIO(draft_out.read_text(encoding="utf-8"))))
        assert [(row["state"], row["verdict"]) for row in draft_rows] == [("completed", "live")]

        assert up.interrupt() == 0, up.stderr_tail()
    finally:
        up.kill_everything()
