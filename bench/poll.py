"""Polling throughput: one `phonebridge scheduler`, one `phonebridge worker`, the simulator (its
own process) answering at once, a high rate ceiling, tasks that complete on their first poll.

Prints completed tasks/s, upstream calls per task (must be 1.0) and p50/p99 of the lag between a
task's next_poll_at and its actual poll (as the simulator saw it). Tasks come due at a steady
`--arrival-rate` (a backlog all due at once would measure queueing, not lag). `--client-only`
measures the upstream client alone at a given concurrency, with httpx's own pool and with the
aiohttp-backed transport.

    .venv/bin/python bench/poll.py [--tasks 5000] [--arrival-rate 1000] [--concurrency 4]
    .venv/bin/python bench/poll.py --client-only [--requests 5000] [--parallel 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import redis
from support import scratch_database

from service.config import build_settings
from service.sim.server import SimProcess, phonebridge_executable
from service.upstream.client import UpstreamClient

REDIS_URL = os.environ.get("PHONEBRIDGE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
API_ID, API_SECRET = "bench-id", "bench-secret"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): a figure that holds up on a
    shared machine, where wall-clock rates depend on what else is running."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_engine(args: argparse.Namespace) -> None:
    with scratch_database("phonebridge_bench", migrated=True) as database:
        url = database.url
        redis.Redis.from_url(REDIS_URL).flushdb()
        sim = SimProcess(["--api-id", API_ID, "--api-secret", API_SECRET])
        sim.start()
        env = {
            **os.environ,
            "PHONEBRIDGE_DATABASE_URL": url,
            "PHONEBRIDGE_REDIS_URL": REDIS_URL,
            "PHONEBRIDGE_UPSTREAM_BASE_URL": sim.base_url,
            "PHONEBRIDGE_UPSTREAM_API_ID": API_ID,
            "PHONEBRIDGE_UPSTREAM_API_SECRET": API_SECRET,
            "PHONEBRIDGE_UPSTREAM_MAX_RPS": "100000",
            "PHONEBRIDGE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        }
        processes: list[subprocess.Popen[bytes]] = []
        try:
            exe = phonebridge_executable()
            processes.append(
                subprocess.Popen([exe, "worker", "--concurrency", str(args.concurrency)], env=env)
            )
            processes.append(subprocess.Popen([exe, "scheduler"], env=env))
            time.sleep(args.warmup_s)  # both processes up before the first task comes due
            cpu_before = [cpu_seconds(process.pid) for process in processes]

            start = datetime.now(UTC) + timedelta(seconds=0.5)
            spacing = 1.0 / args.arrival_rate
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO clients (name) VALUES ('bench')")
                conn.execute(
                    """
                    INSERT INTO tasks (client_id, task_id, state, submitted_at, registered_at,
                                       expires_at, next_poll_at, poll_count, updated_at)
                    SELECT 1, 'sim-ring-0-b' || g, 'pending', %(start)s, %(start)s,
                           %(start)s + interval '1 hour',
                           %(start)s + (g * %(spacing)s) * interval '1 second', 0, %(start)s
                    FROM generate_series(0, %(n)s - 1) AS g
                    """,
                    {"start": start, "spacing": spacing, "n": args.tasks},
                )
                while True:
                    done = conn.execute(
                        "SELECT count(*) FROM tasks WHERE state = 'completed'"
                    ).fetchone()
                    if done and done[0] >= args.tasks:
                        break
                    time.sleep(0.2)
            cpu_used = [
                cpu_seconds(process.pid) - before
                for process, before in zip(processes, cpu_before, strict=True)
            ]
            planned = {
                f"sim-ring-0-b{g}": start.timestamp() + g * spacing for g in range(args.tasks)
            }
            calls = sim.control.calls(endpoint="task_result")
            first_call: dict[str, float] = {}
            for call in calls:
                first_call.setdefault(call["task_id"], call["at"])
            lags = [first_call[t] - planned[t] for t in planned]
            span = max(c["at"] for c in calls) - min(c["at"] for c in calls)
            print(f"tasks                     {args.tasks}")
            print(f"arrival rate (due/s)      {args.arrival_rate:.0f}")
            print(f"completed tasks/s         {args.tasks / span:.0f}   (first to last call)")
            print(f"upstream calls per task   {len(calls) / args.tasks:.3f}")
            print(f"poll lag p50              {percentile(lags, 0.50) * 1000:.0f} ms")
            print(f"poll lag p99              {percentile(lags, 0.99) * 1000:.0f} ms")
            print(f"poll lag max              {max(lags) * 1000:.0f} ms")
            print(f"worker CPU per task       {cpu_used[0] / args.tasks * 1e6:.0f} us")
            print(f"scheduler CPU per task    {cpu_used[1] / args.tasks * 1e6:.0f} us")
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=20)
            sim.stop()


async def client_rate(base_url: str, transport: str, requests: int, parallel: int) -> float:
    settings = build_settings(
        upstream_base_url=base_url, upstream_api_id=API_ID, upstream_api_secret=API_SECRET
    )
    own_pool = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=parallel, max_keepalive_connections=parallel)
    )
    client = UpstreamClient(settings, transport=own_pool if transport == "httpx" else None)
    queue = iter(range(requests))

    async def runner() -> None:
        for i in queue:
            await client.fetch_task_result(f"sim-ring-0-c{i}")

    await client.fetch_task_result("sim-ring-0-warmup")
    started = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(parallel)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return requests / elapsed


def run_client_only(args: argparse.Namespace) -> None:
    with SimProcess(["--api-id", API_ID, "--api-secret", API_SECRET]) as sim:
        for transport in ("httpx", "aiohttp"):
            rates = [
                asyncio.run(client_rate(sim.base_url, transport, args.requests, args.parallel))
                for _ in range(3)
            ]
            print(
                f"upstream client, {transport:8s} transport, {args.parallel} in parallel: "
                f"{statistics.median(rates):,.0f} req/s (median of 3)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--arrival-rate", type=float, default=1000.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup-s", type=float, default=4.0)
    parser.add_argument("--client-only", action="store_true")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--parallel", type=int, default=50)
    args = parser.parse_args()
    if args.client_only:
        run_client_only(args)
    else:
        run_engine(args)


if __name__ == "__main__":
    main()
