"""The key commands as an operator runs them against a running API of two processes:
`api-key add` (a second key for rotation), `list` (no key material), `revoke` under concurrent
load (no request after the cache time succeeds), `limits` (a pending limit that holds across
both processes)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from service.api.keycache import DEFAULT_TTL_S
from service.run.processes import free_port
from tests.support.api import bearer
from tests.support.commands import CliProcess, clean_environment, create_api_key, run_command
from tests.support.databases import scratch_database
from tests.support.waiting import wait_until

# Real api processes: about 20 s.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(own_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One database and API for the module's tests (each works with clients of its own):
    migrating and starting two API processes for each test cost about 5 s apiece."""
    client = redis.Redis.from_url(own_redis_url)
    client.flushall()
    client.close()
    with scratch_database("phonebridge_keys") as database_url:
        env = clean_environment(
            PHONEBRIDGE_DATABASE_URL=database_url,
            PHONEBRIDGE_REDIS_URL=own_redis_url,
            # A revoked key is presented hundreds of times here from one address: the sign-in
            # throttle would answer 429 (tests/integration/api/test_signins_throttle.py), not
            # 401.
            PHONEBRIDGE_SIGN_IN_FAILURES_PER_MINUTE="0",
        )
        migrated = run_command(env, tmp_path_factory.mktemp("migrate"), "migrate")
        assert migrated.returncode == 0, migrated.stderr
        yield env


@pytest.fixture(scope="module")
def api_process(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, CliProcess]]:
    port = free_port()
    process = CliProcess(
        ["api", "--port", str(port), "--workers", "2"], env, tmp_path_factory.mktemp("api")
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), 60, "the API")
        yield url, process
    finally:
        process.kill_everything()


@pytest.fixture
def api_url(api_process: tuple[str, CliProcess]) -> str:
    return api_process[0]


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_a_second_key_rotates_without_downtime_and_list_shows_no_key_material(
    env: dict[str, str], tmp_path: Path, api_url: str
) -> None:
    first = create_api_key(env, tmp_path, "acme")
    added = run_command(env, tmp_path, "api-key", "add", "--client", "acme")
    assert added.returncode == 0, added.stderr
    second = added.stdout.strip().splitlines()[-1]
    assert second.startswith("pbk_")
    assert second != first
    assert second not in added.stderr

    with httpx.Client(base_url=api_url, timeout=10) as api:
        created = api.post("/v1/tasks", json={"task_id": "T-1"}, headers=bearer(first))
        assert created.status_code == 201
        read = api.get("/v1/tasks/T-1", headers=bearer(second))
        assert read.status_code == 200
        assert read.json()["registered_at"] == created.json()["registered_at"]

    def listing_with_both_keys_used() -> str | None:
        out = run_command(env, tmp_path, "api-key", "list", "--client", "acme").stdout
        return out if "acme" in out and "\t-\t-" not in out else None

    listed: str = wait_until(
        listing_with_both_keys_used, 20, "both keys' last use to be recorded", interval_s=0.5
    )
    lines = listed.strip().splitlines()
    assert lines[0].split("\t") == ["key_id", "client", "prefix", "created", "last_used", "revoked"]
    assert len(lines) == 3
    for line, key in zip(lines[1:], (first, second), strict=True):
        _key_id, client, prefix, created_at, last_used, revoked = line.split("\t")
        assert client.endswith(":acme")
        assert prefix == key[:12] + "..."
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created_at)
        assert last_used != "-"
        assert revoked == "-"
    for key in (first, second):
        # Nothing past the shown prefix: no 8 characters of the key's secret part anywhere.
        secret_part = key[12:]
        chunks = {secret_part[i : i + 8] for i in range(len(secret_part) - 7)}
        assert not any(chunk in listed for chunk in chunks)

    unknown = run_command(env, tmp_path, "api-key", "add", "--client", "nobody")
    assert unknown.returncode != 0
    assert unknown.stdout == ""
    assert "no client named or numbered 'nobody'" in unknown.stderr


def test_a_revoked_key_answers_401_within_the_cache_time_under_concurrent_load(
    env: dict[str, str], tmp_path: Path, api_url: str
) -> None:
    keep = create_api_key(env, tmp_path, "rotating")
    leaked = run_command(env, tmp_path, "api-key", "add", "--client", "rotating")
    leaked_key = leaked.stdout.strip().splitlines()[-1]
    key_id = run_command(env, tmp_path, "api-key", "list", "--client", "rotating").stdout
    leaked_id = key_id.strip().splitlines()[-1].split("\t")[0]

    stop = threading.Event()
    # (started at, status) of every request of the leaked key, from 8 threads at once.
    seen: list[tuple[float, int]] = []
    lock = threading.Lock()

    def hammer() -> None:
        with httpx.Client(base_url=api_url, timeout=10) as api:
            while not stop.is_set():
                started = time.monotonic()
                status = api.get("/v1/tasks", headers=bearer(leaked_key)).status_code
                with lock:
                    seen.append((started, status))

    with ThreadPoolExecutor(8) as pool:
        for _ in range(8):
            pool.submit(hammer)
        wait_until(lambda: len(seen) > 50, 20, "load on the leaked key")
        revoked = run_command(env, tmp_path, "api-key", "revoke", leaked_id)
        revoked_at = time.monotonic()
        assert revoked.returncode == 0, revoked.stderr
        assert f"API key {leaked_id} revoked" in revoked.stdout
        time.sleep(DEFAULT_TTL_S + 2.0)
        stop.set()

    late = [status for started, status in seen if started > revoked_at + DEFAULT_TTL_S]
    assert late
    assert set(late) == {401}, late[:20]
    assert any(status == 200 for started, status in seen if started < revoked_at)
    with httpx.Client(base_url=api_url, timeout=10) as api:
        assert api.get("/v1/tasks", headers=bearer(keep)).status_code == 200
    listed = run_command(env, tmp_path, "api-key", "list", "--client", "rotating").stdout
    assert listed.strip().splitlines()[-1].split("\t")[-1] != "-"
    again = run_command(env, tmp_path, "api-key", "revoke", "999999")
    assert again.returncode != 0
    assert "no API key with id 999999" in again.stderr


def test_limits_hold_across_two_api_processes(
    env: dict[str, str], tmp_path: Path, api_process: tuple[str, CliProcess]
) -> None:
    api_url, process = api_process
    key = create_api_key(env, tmp_path, "busy")
    limits = run_command(
        env, tmp_path, "api-key", "limits", "--client", "busy", "--max-pending", "40"
    )
    assert limits.returncode == 0, limits.stderr
    assert "max pending 40" in limits.stdout
    assert "max rps the setting (off)" in limits.stdout

    def register(index: int) -> int:
        with httpx.Client(base_url=api_url, timeout=10) as api:
            return api.post(
                "/v1/tasks", json={"task_id": f"L-{index}"}, headers=bearer(key)
            ).status_code

    # Fresh connections each time, so the kernel spreads them over both processes.
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(register, range(120)))
    assert codes.count(201) == 40
    assert codes.count(429) == 80
    with httpx.Client(base_url=api_url, timeout=10) as api:
        listed = api.get("/v1/tasks?limit=500&state=pending", headers=bearer(key)).json()
    assert len(listed["data"]) == 40

    # Calls per second, counted in Redis (the run's own Redis is version 6, like the embedded
    # server of `up`): 8 threads on fresh connections against a limit of 10 a second, for 3 s
    # and until a call has been refused (a busy machine may send fewer than 10 in a second).
    steady = create_api_key(env, tmp_path, "steady")
    limited = run_command(
        env, tmp_path, "api-key", "limits", "--client", "steady", "--max-rps", "10"
    )
    assert limited.returncode == 0, limited.stderr
    started = time.time()
    refused = threading.Event()

    def going_on() -> bool:
        elapsed = time.time() - started
        return elapsed < 3.0 or (not refused.is_set() and elapsed < 30.0)

    def call_until_stopped(_: int) -> list[tuple[int, int]]:
        answers = []
        while going_on():
            with httpx.Client(base_url=api_url, timeout=10) as api:
                sent = int(time.time())
                response = api.get("/v1/tasks", headers=bearer(steady))
                assert response.headers["ratelimit-limit"] == "10"
                answers.append((sent, response.status_code))
                if response.status_code == 429:
                    refused.set()
        return answers

    with ThreadPoolExecutor(8) as pool:
        answers = [a for chunk in pool.map(call_until_stopped, range(8)) for a in chunk]
    seconds = {sent for sent, _ in answers}
    ok = sum(status == 200 for _, status in answers)
    assert 429 in {status for _, status in answers}
    # Each whole second allows 10 (a call sent near a second's end may count in the next).
    assert ok <= 10 * (len(seconds) + 1), (ok, len(seconds))
    logs = process.output + process.stderr_path.read_text()
    assert "limits.redis_unavailable" not in logs


def test_a_clients_poll_lag_target_is_set_kept_and_given_back_to_the_setting(
    env: dict[str, str], tmp_path: Path
) -> None:
    create_api_key(env, tmp_path, "patient")

    def limits(*args: str) -> str:
        done = run_command(env, tmp_path, "api-key", "limits", "--client", "patient", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "poll target p95 20 s" in limits("--poll-target-p95-s", "20")
    # Another limit's change keeps it.
    assert "poll target p95 20 s" in limits("--max-pending", "5")
    assert "poll target p95 the setting (off)" in limits("--poll-target-p95-s", "default")
    refused = run_command(
        env, tmp_path, "api-key", "limits", "--client", "patient", "--poll-target-p95-s", "0"
    )
    assert refused.returncode != 0
    assert "more than 0 seconds" in refused.stderr
