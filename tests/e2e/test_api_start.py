"""`phonebridge api` started while its database does not answer: it serves (and answers 503), and
says so once rather than logging every retry of its connection pool."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from service.run.processes import free_port
from tests.support.commands import CliProcess, clean_environment
from tests.support.waiting import wait_until


@pytest.mark.slow  # a real `phonebridge api` process, watched for 3 s
def test_api_without_its_database_says_once_that_it_answers_503_until_it_does(
    tmp_path: Path, own_redis_url: str
) -> None:
    port = free_port()
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=f"postgres://127.0.0.1:{free_port()}/nothing-here",
        PHONEBRIDGE_REDIS_URL=own_redis_url,
        PHONEBRIDGE_DATA_DIR=str(tmp_path / "data"),
    )
    api = CliProcess(["api", "--port", str(port)], env, tmp_path)
    try:

        def ready_answers_503() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 503
            except httpx.HTTPError:
                return False

        wait_until(ready_answers_503, 30, "the API to answer 503")
        # Meanwhile its pool retries every slot: that made 16 warnings in the first 2 s.
        keep_watching_until = time.monotonic() + 3.0
        while time.monotonic() < keep_watching_until:
            assert api.process.poll() is None
            assert ready_answers_503()
        assert api.interrupt() == 0
        events = [json.loads(line) for line in api.stderr_path.read_text().splitlines()]
        warnings = [e["event"] for e in events if e["level"] == "warning"]
        assert warnings.count("api.database_unavailable_at_start") == 1, warnings
        assert sum(1 for e in events if e["logger"] == "psycopg.pool") <= 1, warnings
    finally:
        api.kill_everything()
