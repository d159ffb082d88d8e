"""Intake throughput of one `phonebridge api` process: tasks/s for single POSTs at concurrency 32
and for batches of 1000.

    .venv/bin/python bench/intake.py                      # starts its own API on a scratch database
    .venv/bin/python bench/intake.py --url http://127.0.0.1:8000 --key pbk_...   # a running API

Without --url it creates a scratch database on PHONEBRIDGE_TEST_ADMIN_URL (default the local
postgres), migrates it, mints a key with `phonebridge api-key create`, starts `phonebridge api`
(one uvicorn process) and drops the database at the end. The load comes from this process (aiohttp),
separate from the server's. Figures are medians of --rounds rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

REPO = Path(__file__).resolve().parent.parent
PHONEBRIDGE = str(REPO / ".venv" / "bin" / "phonebridge")
ADMIN_URL = os.environ.get(
    "PHONEBRIDGE_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PHONEBRIDGE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


@dataclass
class Round:
    tasks: int
    seconds: float
    failures: int
    latencies_ms: list[float]
    server_cpu_s: float | None = None

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds


async def single_round(
    session: aiohttp.ClientSession, url: str, key: str, total: int, concurrency: int
) -> Round:
    run = secrets.token_hex(4)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    counter = iter(range(total))
    latencies: list[float] = []
    failures = 0

    async def client() -> None:
        nonlocal failures
        for n in counter:
            body = f'{{"task_id":"s-{run}-{n}","metadata":{{"n":{n}}}}}'
            started = time.perf_counter()
            async with session.post(f"{url}/v1/tasks", data=body, headers=headers) as response:
                await response.read()
                if response.status != 201:
                    failures += 1
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Round(total, time.perf_counter() - started, failures, latencies)


async def batch_round(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    batches: int,
    batch_size: int,
    concurrency: int,
) -> Round:
    run = secrets.token_hex(4)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    counter = iter(range(batches))
    latencies: list[float] = []
    failures = 0

    async def client() -> None:
        nonlocal failures
        for b in counter:
            entries = ",".join(
                f'{{"task_id":"b-{run}-{b}-{i}","metadata":{{"i":{i}}}}}' for i in range(batch_size)
            )
            body = f'{{"tasks":[{entries}]}}'
            started = time.perf_counter()
            async with session.post(f"{url}/v1/tasks/batch", data=body, headers=headers) as resp:
                payload = await resp.json()
                if resp.status != 200:
                    failures += batch_size
                else:
                    failures += sum(1 for r in payload["results"] if r["outcome"] != "created")
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Round(batches * batch_size, time.perf_counter() - started, failures, latencies)


def report(name: str, rounds: list[Round]) -> None:
    rates = [r.rate for r in rounds]
    latencies = sorted(ms for r in rounds for ms in r.latencies_ms)
    if not latencies:
        print(f"{name}: no requests were made")
        return
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"{name}: {statistics.median(rates):,.0f} tasks/s (median of {len(rounds)}: "
        f"{', '.join(f'{r:,.0f}' for r in rates)}); request latency p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms; failures {sum(r.failures for r in rounds)}"
    )
    cpu = [r.server_cpu_s for r in rounds if r.server_cpu_s is not None]
    if cpu:
        per_task_us = statistics.median(c / r.tasks * 1e6 for c, r in zip(cpu, rounds, strict=True))
        busy = statistics.median(c / r.seconds for c, r in zip(cpu, rounds, strict=True))
        print(
            f"  API process CPU: {per_task_us:,.0f} us per task, busy {busy:.0%} of one core; "
            f"one fully busy core would take {1e6 / per_task_us:,.0f} tasks/s"
        )


def process_cpu_s(pid: int | None) -> float | None:
    """User plus system CPU seconds of a process (Linux), to tell load from contention."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed(pid: int | None, work: Any) -> Round:
    before = process_cpu_s(pid)
    result: Round = await work
    after = process_cpu_s(pid)
    if before is not None and after is not None:
        result.server_cpu_s = after - before
    return result


async def measure(args: argparse.Namespace, url: str, key: str, pid: int | None) -> None:
    connector = aiohttp.TCPConnector(limit=max(args.concurrency, args.batch_concurrency))
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the server (connection pool, prepared statements, key cache) before measuring.
        await single_round(session, url, key, 500, args.concurrency)
        # A phase asked to do nothing (--single-tasks 0 or --batches 0) is skipped, not reported.
        if args.single_tasks > 0:
            singles = [
                await timed(
                    pid, single_round(session, url, key, args.single_tasks, args.concurrency)
                )
                for _ in range(args.rounds)
            ]
            report(f"single POST /v1/tasks, concurrency {args.concurrency}", singles)
        if args.batches > 0 and args.batch_size > 0:
            batches = [
                await timed(
                    pid,
                    batch_round(
                        session, url, key, args.batches, args.batch_size, args.batch_concurrency
                    ),
                )
                for _ in range(args.rounds)
            ]
            report(
                f"POST /v1/tasks/batch, {args.batch_size} per batch, "
                f"concurrency {args.batch_concurrency}",
                batches,
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def scratch_api() -> Iterator[tuple[str, str, int]]:
    name = f"phonebridge_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    env = {
        **os.environ,
        "PHONEBRIDGE_DATABASE_URL": f"{base}/{name}",
        "PHONEBRIDGE_REDIS_URL": REDIS_URL,
        "PHONEBRIDGE_LOG_LEVEL": "WARNING",
    }
    server = None
    try:
        subprocess.run([PHONEBRIDGE, "migrate"], env=env, check=True, capture_output=True)
        created = subprocess.run(
            [PHONEBRIDGE, "api-key", "create", "--name", "bench"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        port = free_port()
        server = subprocess.Popen([PHONEBRIDGE, "api", "--port", str(port)], env=env)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url)
        yield url, key, server.pid
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the API at {url} did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running API; without it a scratch one is started")
    parser.add_argument("--key", help="an API key of that API")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--single-tasks", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pid", type=int, help="the API's process id, to report its CPU use")
    args = parser.parse_args()
    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        asyncio.run(measure(args, args.url.rstrip("/"), args.key, args.pid))
        return 0
    with scratch_api() as (url, key, pid):
        asyncio.run(measure(args, url, key, pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
