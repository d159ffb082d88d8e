"""Scale: does the engine stay flat as the pending table grows? For 10,000 and 1,000,000 pending
tasks (inserted in bulk, spread over ten clients: one with 90% of them), prints side by side: the
duration of one claim round (500 due rows shared fairly across the clients with due work,
FOR UPDATE SKIP LOCKED), of one deadline sweep, Redis memory, and the resident memory of a
`phonebridge worker` and a `phonebridge scheduler` after polling for a while.

    .venv/bin/python bench/scale.py [--sizes 10000,1000000] [--run-s 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis
from poll import API_ID, API_SECRET, REDIS_URL
from support import scratch_database

from service.config import build_settings
from service.sim.server import SimProcess, phonebridge_executable
from service.store.db import create_engine_for, session_factory, transaction
from service.store.deadline_sweep import expire_overdue_tasks
from service.store.poll_claims import claim_due_tasks

CLAIM_SIZE = 500
CLIENTS = 10


def insert_pending(url: str, count: int) -> None:
    """`count` pending tasks: 2,000 due now (whatever the size, so rounds compare), the rest due
    over five minutes starting ten minutes from now, so none of them comes due while the rounds
    are timed (inserting and analysing a million rows takes long enough that rows due "over the
    next five minutes" made the 1,000,000 round claim from ~30 times as many due rows as the
    10,000 one); every tenth belongs to one of nine small clients, the rest to one big client."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO clients (name) SELECT 'scale-' || g FROM generate_series(1, %(n)s) AS g",
            {"n": CLIENTS},
        )
        conn.execute(
            """
            INSERT INTO tasks (client_id, task_id, state, submitted_at, registered_at,
                               expires_at, next_poll_at, poll_count, updated_at)
            SELECT CASE WHEN g %% 10 = 0 THEN 2 + (g / 10) %% 9 ELSE 1 END,
                   'sim-never-s' || g, 'pending', now(), now(), now() + interval '1 day',
                   now() + CASE WHEN g <= 2000 THEN interval '0'
                                ELSE interval '10 minutes' + (g %% 300) * interval '1 second'
                           END,
                   0, now()
            FROM generate_series(1, %(n)s) AS g
            """,
            {"n": count},
        )
        conn.execute("VACUUM ANALYZE tasks")


async def time_rounds(url: str) -> tuple[float, float]:
    settings = build_settings(database_url=url, redis_url=REDIS_URL)
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=2)
    sessions = session_factory(engine)
    claims, sweeps = [], []
    for _ in range(7):
        now = datetime.now(UTC)
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            await claim_due_tasks(session, now, 60, CLAIM_SIZE)
            claims.append(time.perf_counter() - started)
            await session.rollback()  # measure the same round again, not an emptier one
        started = time.perf_counter()
        async with transaction(sessions) as session:
            await expire_overdue_tasks(session, now, 500)
        sweeps.append(time.perf_counter() - started)
    await engine.dispose()
    return statistics.median(claims), statistics.median(sweeps)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(count: int, run_s: float) -> dict[str, float]:
    with scratch_database("phonebridge_bench", migrated=True) as database:
        url = database.url
        client = redis.Redis.from_url(REDIS_URL)
        client.flushdb()
        processes: list[subprocess.Popen[bytes]] = []
        try:
            insert_pending(url, count)
            claim_s, sweep_s = asyncio.run(time_rounds(url))
            with SimProcess(["--api-id", API_ID, "--api-secret", API_SECRET]) as sim:
                env = {
                    **os.environ,
                    "PHONEBRIDGE_DATABASE_URL": url,
                    "PHONEBRIDGE_REDIS_URL": REDIS_URL,
                    "PHONEBRIDGE_UPSTREAM_BASE_URL": sim.base_url,
                    "PHONEBRIDGE_UPSTREAM_API_ID": API_ID,
                    "PHONEBRIDGE_UPSTREAM_API_SECRET": API_SECRET,
                    "PHONEBRIDGE_UPSTREAM_MAX_RPS": "500",
                    "PHONEBRIDGE_LOG_LEVEL": "WARNING",
                }
                exe = phonebridge_executable()
                worker = subprocess.Popen([exe, "worker"], env=env, stderr=subprocess.DEVNULL)
                scheduler = subprocess.Popen([exe, "scheduler"], env=env, stderr=subprocess.DEVNULL)
                processes += [worker, scheduler]
                time.sleep(run_s)
                figures = {
                    "claim round (ms)": claim_s * 1000,
                    "deadline sweep (ms)": sweep_s * 1000,
                    "redis used memory (MiB)": int(client.info("memory")["used_memory"]) / 2**20,
                    "worker RSS (MiB)": rss_mib(worker.pid),
                    "scheduler RSS (MiB)": rss_mib(scheduler.pid),
                    "polls during the run": float(sim.control.stats()["calls"]),
                }
                for process in processes:
                    process.send_signal(signal.SIGTERM)
                for process in processes:
                    process.wait(timeout=20)
            return figures
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
            client.flushdb()


def main() -> None:
    print(f"load average at start: {os.getloadavg()}")
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--run-s", type=float, default=15.0)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = {size: measure(size, args.run_s) for size in sizes}
    header = "".join(f"{size:>16,}" for size in sizes)
    print(f"{'pending tasks':28}{header}")
    for key in results[sizes[0]]:
        print(f"{key:28}" + "".join(f"{results[size][key]:>16.1f}" for size in sizes))


if __name__ == "__main__":
    main()
