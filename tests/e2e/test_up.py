"""`phonebridge up`, run as a user runs it: with given URLs, and with embedded servers."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from service.sim.server import SimServer, phonebridge_executable
from tests.support.api import bearer
from tests.support.commands import (
    STOP_TIMEOUT_S,
    CliProcess,
    clean_environment,
    create_api_key,
    still_running,
    wait_for_task_state,
)
from tests.support.embedded import folder_modes

API_LINE = r"API listening on (http://\S+)"
EXPORT_LINE = r"export PHONEBRIDGE_DATABASE_URL=(\S+) PHONEBRIDGE_REDIS_URL=(\S+)"


def register_task(api_url: str, api_key: str, task_id: str) -> None:
    response = httpx.post(
        f"{api_url}/v1/tasks",
        json={"task_id": task_id},
        headers=bearer(api_key),
        timeout=10.0,
    )
    assert response.status_code == 201, response.text


def stop_and_check_nothing_is_left(up: CliProcess, started: list[psutil.Process]) -> None:
    assert started, "up started no processes"
    assert up.interrupt() == 0, up.stderr_tail()
    assert still_running(started) == []
    assert up.output.splitlines()[-1].endswith("stopped")


@pytest.mark.slow  # real servers and processes: about 13 s
def test_up_with_given_urls_runs_the_production_commands_and_stops_them_all(
    tmp_path: Path,
    empty_database: str,
    flushed_redis_url: str,
    upstream_env: dict[str, str],
    upstream_sim: SimServer,
) -> None:
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=empty_database,
        PHONEBRIDGE_REDIS_URL=flushed_redis_url,
        PHONEBRIDGE_DATA_DIR=str(tmp_path / "data"),
        **upstream_env,
    )
    up = CliProcess(["up", "--port", "0"], env, tmp_path)
    try:
        api_url = up.wait_for(API_LINE).group(1)
        assert "embedded" not in up.output
        started = up.descendants()
        commands = [" ".join(p.cmdline()) for p in started]
        for command in ("service.cli api", "service.cli worker", "service.cli scheduler"):
            assert any(command in line for line in commands), commands

        api_key = create_api_key(env, tmp_path, "e2e-up")
        register_task(api_url, api_key, "sim-ring-1-e2e-up")
        task = wait_for_task_state(api_url, api_key, "sim-ring-1-e2e-up", "completed")
        assert task["result"]["phone_status"] == "ring"
        assert upstream_sim.control.task("sim-ring-1-e2e-up")["calls"] == 2

        stop_and_check_nothing_is_left(up, started)
        assert not (tmp_path / "data" / "postgres").exists()
        # Celery's multi-line warning about running as root (the tests may run as root).
        assert "superuser privileges" not in up.stderr_path.read_text()
    finally:
        up.kill_everything()


@pytest.mark.slow  # real servers and processes: about 13 s
def test_up_with_embedded_servers_keeps_data_and_ports_across_a_restart_and_leaves_no_process(
    tmp_path: Path, embedded_data_dir: Path, upstream_env: dict[str, str]
) -> None:
    data_dir = embedded_data_dir
    modes = folder_modes(data_dir.parent)
    env = clean_environment(PHONEBRIDGE_DATA_DIR=str(data_dir), **upstream_env)

    first = CliProcess(["up", "--port", "0"], env, tmp_path)
    try:
        database_url, redis_url = first.wait_for(EXPORT_LINE).groups()
        api_url = first.wait_for(API_LINE).group(1)
        # No URL set: the command finds the embedded servers of the `up` on its data directory.
        api_key = create_api_key(env, tmp_path, "e2e-embedded")
        register_task(api_url, api_key, "sim-busy-0-kept")
        wait_for_task_state(api_url, api_key, "sim-busy-0-kept", "completed")
        first_redis = redis.Redis.from_url(redis_url)
        first_redis.set("e2e:kept", "yes")
        first_redis.close()

        started = first.descendants()
        names = {p.name() for p in started}
        assert {"postgres", "redis-server"} <= names, names
        stop_and_check_nothing_is_left(first, started)
    finally:
        first.kill_everything()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not (data_dir / "up.lock").exists()

    second = CliProcess(["up", "--port", "0"], env, tmp_path)
    try:
        # The same ports, free again: an `export` line copied from the first run still works.
        assert second.wait_for(EXPORT_LINE).groups() == (database_url, redis_url)
        api_url = second.wait_for(API_LINE).group(1)
        task = wait_for_task_state(api_url, api_key, "sim-busy-0-kept", "completed", 5.0)
        assert task["result"]["phone_status"] == "busy"
        second_redis = redis.Redis.from_url(redis_url)
        assert second_redis.get("e2e:kept") == b"yes"
        second_redis.close()
        stop_and_check_nothing_is_left(second, second.descendants())
    finally:
        second.kill_everything()
    # The data directory sits in a private folder: no folder above it was opened to others.
    assert folder_modes(data_dir.parent) == modes


def test_up_names_the_variable_when_the_configuration_is_unusable(tmp_path: Path) -> None:
    env = clean_environment(PHONEBRIDGE_REDIS_URL="http://not-redis", PHONEBRIDGE_DATA_DIR="x")
    up = CliProcess(["up"], env, tmp_path)
    try:
        assert up.process.wait(timeout=30) == 2
        assert re.search(r"PHONEBRIDGE_REDIS_URL", up.stderr_tail())
        assert len(up.stderr_tail().splitlines()) == 1
    finally:
        up.kill_everything()


def test_up_with_nothing_set_says_in_one_line_which_variable_is_missing_and_starts_nothing(
    tmp_path: Path, embedded_data_dir: Path
) -> None:
    env = clean_environment(PHONEBRIDGE_DATA_DIR=str(embedded_data_dir))
    up = CliProcess(["up"], env, tmp_path)
    try:
        assert up.process.wait(timeout=30) == 2
        up.wait_for_end()
        assert up.output == ""
        lines = up.stderr_tail().splitlines()
        assert len(lines) == 1, lines
        assert "PHONEBRIDGE_UPSTREAM_API_ID and PHONEBRIDGE_UPSTREAM_API_SECRET" in lines[0]
        assert "phonebridge demo" in lines[0]
        assert not (embedded_data_dir / "postgres").exists()
    finally:
        up.kill_everything()


@pytest.mark.slow  # `phonebridge up` with its API, worker and scheduler processes
def test_up_stops_in_order_when_the_reader_of_its_output_goes_away(
    tmp_path: Path,
    empty_database: str,
    flushed_redis_url: str,
    upstream_env: dict[str, str],
) -> None:
    # `phonebridge up | tee log` and Ctrl-C: tee dies with the same signal, so every later line
    # of `up` meets a closed pipe. It used to die on the first one, mid-stop.
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=empty_database,
        PHONEBRIDGE_REDIS_URL=flushed_redis_url,
        PHONEBRIDGE_DATA_DIR=str(tmp_path / "data"),
        **upstream_env,
    )
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr_file:
        up = subprocess.Popen(
            [phonebridge_executable(), "up", "--port", "0"],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
        )
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if re.search(API_LINE, line):
                break
        started = psutil.Process(up.pid).children(recursive=True)
        assert started, "up started no processes"
        up.stdout.close()
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=STOP_TIMEOUT_S)
        stderr = stderr_path.read_text(errors="replace")
        assert code == 0, stderr[-3000:]
        assert still_running(started) == []
        assert "Traceback" not in stderr
    finally:
        if up.poll() is None:
            for process in psutil.Process(up.pid).children(recursive=True):
                process.kill()
            up.kill()
            up.wait()
