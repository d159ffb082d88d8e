"""End-to-end throughput: register -> poll -> store -> event -> signed webhook, through the real
processes (`phonebridge api`, `scheduler`, `worker`), with 1 and then 2 worker processes.

    .venv/bin/python bench/e2e.py [--tasks 3000] [--rounds 3] [--workers 1,2]

It creates a scratch database on PHONEBRIDGE_TEST_ADMIN_URL (default the local postgres), mints a
key, starts the simulator (tasks `sim-ring-0-...` answer OK on their first poll), a receiver that
verifies every signature (its own process), the API, one scheduler and the workers, subscribes the
receiver, then per round registers --tasks tasks (batches of --batch-size over the API) and waits
until the receiver has verified one webhook per task. It prints tasks/s (first registration to the
last verified webhook) and, steadier on a shared machine, CPU microseconds per task of every
process: the API, the scheduler, each worker, the PostgreSQL backends serving this database (from
/proc, found through pg_stat_activity; the server's shared WAL writer and checkpointer are not in
it), and the simulator and receiver (to show they are not the limit). Medians of --rounds, after a
warm-up round; the load average before and after. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psycopg
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from support import cpu_s, scratch_database  # noqa: E402

from service.sim.server import SimProcess  # noqa: E402

PHONEBRIDGE = str(REPO / ".venv" / "bin" / "phonebridge")
REDIS_URL = os.environ.get("PHONEBRIDGE_BENCH_E2E_REDIS_URL", "redis://127.0.0.1:6379/13")
API_ID, API_SECRET = "bench-id", "bench-secret"
SECRET_KEY = "bench-secret-key-for-webhook-secrets"


# --- the receiver's process ------------------------------------------------------------------


def serve_receiver() -> None:
    """A webhook receiver that verifies each signature with the secret it is given (POST
    /_secret) and counts distinct verified webhook-ids. Prints its port, serves until killed."""
    from datetime import UTC, datetime

    from aiohttp import web

    from service.domain.signing import verify_signature

    secret: list[str] = []
    verified: dict[str, float] = {}
    rejected = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal rejected
        body = await request.read()
        if secret and verify_signature(secret[0], request.headers, body, datetime.now(UTC)):
            verified.setdefault(request.headers["webhook-id"], time.time())
            return web.Response(text="ok")
        rejected += 1
        return web.Response(status=400, text="bad signature")

    async def set_secret(request: web.Request) -> web.Response:
        secret[:] = [(await request.read()).decode()]
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        times = verified.values()
        body = {"count": len(verified), "last": max(times, default=0.0), "rejected": rejected}
        return web.json_response(body)

    async def reset(request: web.Request) -> web.Response:
        verified.clear()
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/_stats", stats)
        app.router.add_post("/_secret", set_secret)
        app.router.add_post("/_reset", reset)
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
        await asyncio.Event().wait()

    import uvloop

    uvloop.run(main())


# --- measuring -------------------------------------------------------------------------------


def backend_cpu(db_url: str, database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to this database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        ]
    return {pid: cpu_s(pid) for pid in pids}


def table_writes(db_url: str) -> dict[str, int]:
    """Rows inserted, updated and deleted so far per table, and transactions committed: how
    much work the database did, whatever else runs on the server."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        counts = {
            f"{name} rows written": int(written)
            for name, written in conn.execute(
                "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables"
            )
        }
        commits = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        wal = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    counts["transactions"] = int(commits[0]) if commits else 0
    # Server-wide: on a shared server, an upper bound of this run's WAL.
    counts["WAL bytes (whole server)"] = int(wal[0]) if wal else 0
    return counts


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


@dataclass
class Round:
    tasks: int
    seconds: float
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds


@dataclass
class Stack:
    db_url: str
    database: str
    api_url: str
    key: str
    receiver_port: int
    processes: dict[str, subprocess.Popen[Any]]


async def register(session: aiohttp.ClientSession, stack: Stack, args: argparse.Namespace) -> None:
    run = secrets.token_hex(4)
    headers = {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}
    batches = iter(range(0, args.tasks, args.batch_size))

    async def client() -> None:
        for start in batches:
            count = min(args.batch_size, args.tasks - start)
            entries = ",".join(
                f'{{"task_id":"sim-ring-0-{run}-{start + i}"}}' for i in range(count)
            )
            async with session.post(
                f"{stack.api_url}/v1/tasks/batch", data=f'{{"tasks":[{entries}]}}', headers=headers
            ) as response:
                payload = await response.json()
                created = sum(1 for r in payload.get("results", []) if r["outcome"] == "created")
                if response.status != 200 or created != count:
                    raise SystemExit(f"registration failed: {response.status} {payload}")

    await asyncio.gather(*(client() for _ in range(args.batch_concurrency)))


def receiver_stats(port: int) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/_stats").json()
    return result


def one_round(stack: Stack, args: argparse.Namespace, tasks: int) -> Round:
    httpx.post(f"http://127.0.0.1:{stack.receiver_port}/_reset").raise_for_status()
    round_args = argparse.Namespace(**{**vars(args), "tasks": tasks})
    before = {name: cpu_s(p.pid) for name, p in stack.processes.items()}
    pg_before = backend_cpu(stack.db_url, stack.database)
    started = time.time()

    async def registration() -> None:
        async with aiohttp.ClientSession() as session:
            await register(session, stack, round_args)

    asyncio.run(registration())
    deadline = time.monotonic() + args.timeout_s
    while True:
        seen = receiver_stats(stack.receiver_port)
        if seen["count"] >= tasks:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"only {seen['count']} of {tasks} webhooks verified in time")
        time.sleep(0.05)
    # The API, scheduler and workers are idle once the last webhook arrived, but the worker's
    # write-back of that last delivery may still be running: let it land in this round.
    time.sleep(0.3)
    result = Round(tasks, seen["last"] - started)
    for name, process in stack.processes.items():
        result.cpu_s[name] = cpu_s(process.pid) - before[name]
    pg_after = backend_cpu(stack.db_url, stack.database)
    result.cpu_s["postgres"] = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items())
    if seen["rejected"]:
        raise SystemExit(f"the receiver rejected {seen['rejected']} webhooks")
    return result


def report(workers: int, rounds: list[Round], writes: dict[str, int]) -> None:
    rates = [r.rate for r in rounds]
    print(
        f"{workers} worker process(es): {statistics.median(rates):,.0f} tasks/s "
        f"(median of {len(rounds)}: {', '.join(f'{r:,.0f}' for r in rates)})"
    )
    names = list(rounds[0].cpu_s)
    for name in names:
        per_task = statistics.median(r.cpu_s[name] / r.tasks * 1e6 for r in rounds)
        print(f"  {name:12s} {per_task:7,.0f} us CPU per task")
    workers_total = statistics.median(
        sum(cpu for name, cpu in r.cpu_s.items() if name.startswith("worker")) / r.tasks * 1e6
        for r in rounds
    )
    print(f"  {'workers, all':12s} {workers_total:7,.0f} us CPU per task")
    tasks = sum(r.tasks for r in rounds)
    for name, count in sorted(writes.items()):
        print(f"  {name:34s} {count / tasks:6.2f} per task")


# --- the stack -------------------------------------------------------------------------------


def log_file(command: str) -> Any:
    """Where a process's log goes: PHONEBRIDGE_BENCH_LOG_DIR/<command>.log, or nowhere."""
    log_dir = os.environ.get("PHONEBRIDGE_BENCH_LOG_DIR")
    if not log_dir:
        return subprocess.DEVNULL
    return open(Path(log_dir) / f"{command}.log", "ab")


def wait_for_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(command: list[str], env: dict[str, str], log: str) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        [PHONEBRIDGE, *command], env=env, stdout=subprocess.DEVNULL, stderr=log_file(log), cwd=REPO
    )


def stop(processes: list[subprocess.Popen[Any]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def subscribe(api_url: str, key: str, receiver_port: int) -> None:
    answer = httpx.post(
        f"{api_url}/v1/subscriptions",
        json={"url": f"http://127.0.0.1:{receiver_port}/hook", "event_types": ["task.completed"]},
        headers={"Authorization": f"Bearer {key}"},
    )
    answer.raise_for_status()
    secret = answer.json()["secret"]
    httpx.post(f"http://127.0.0.1:{receiver_port}/_secret", content=secret).raise_for_status()


def profile(
    folder: str | None, processes: dict[str, subprocess.Popen[Any]], workers: int
) -> list[subprocess.Popen[Any]]:
    """py-spy on the API, the scheduler and each worker while the rounds run: collapsed stacks
    (one line per stack and its sample count) in FOLDER/<workers>w-<process>.txt."""
    if folder is None:
        return []
    Path(folder).mkdir(parents=True, exist_ok=True)
    py_spy = str(REPO / ".venv" / "bin" / "py-spy")
    return [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(process.pid),
                "--format",
                "raw",
                "--rate",
                "200",
                "--subprocesses",
                "--nonblocking",
                "--output",
                str(Path(folder) / f"{workers}w-{name.replace(' ', '')}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, process in processes.items()
        if name in ("api", "scheduler") or name.startswith("worker")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker process counts to measure")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-concurrency", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument(
        "--profile", metavar="FOLDER", help="record py-spy profiles of the rounds in FOLDER"
    )
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver()
        return

    print(f"load average before: {load_average()}", flush=True)
    redis.Redis.from_url(REDIS_URL).flushdb()
    with scratch_database("phonebridge_bench_e2e") as scratch:
        db_url = scratch.url
        env = {
            **os.environ,
            "PHONEBRIDGE_DATABASE_URL": db_url,
            "PHONEBRIDGE_REDIS_URL": REDIS_URL,
            "PHONEBRIDGE_SECRET_KEY": SECRET_KEY,
            "PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE": "true",
            "PHONEBRIDGE_UPSTREAM_API_ID": API_ID,
            "PHONEBRIDGE_UPSTREAM_API_SECRET": API_SECRET,
            "PHONEBRIDGE_UPSTREAM_MAX_RPS": "100000",
            "PHONEBRIDGE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        }
        subprocess.run([PHONEBRIDGE, "migrate"], env=env, check=True, capture_output=True)
        key = subprocess.run(
            [PHONEBRIDGE, "api-key", "create", "--name", "bench"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        sim = SimProcess(["--api-id", API_ID, "--api-secret", API_SECRET])
        sim.start()
        env["PHONEBRIDGE_UPSTREAM_BASE_URL"] = sim.base_url
        receiver = subprocess.Popen(
            [sys.executable, __file__, "--serve-receiver"], stdout=subprocess.PIPE, text=True
        )
        assert receiver.stdout is not None
        receiver_port = int(receiver.stdout.readline())
        port = free_port()
        api = start(["api", "--port", str(port)], env, "api")
        scheduler = start(["scheduler"], env, "scheduler")
        workers: list[subprocess.Popen[Any]] = []
        try:
            wait_for_port(port)
            api_url = f"http://127.0.0.1:{port}"
            subscribe(api_url, key, receiver_port)
            assert sim.process is not None
            for count in (int(n) for n in args.workers.split(",")):
                stop(workers)
                workers = [start(["worker"], env, f"worker{n}") for n in range(1, count + 1)]
                time.sleep(3)  # each worker's engine loop and pools up before the first task
                processes = {
                    "api": api,
                    "scheduler": scheduler,
                    **{f"worker {n}": w for n, w in enumerate(workers, 1)},
                    "simulator": sim.process,
                    "receiver": receiver,
                }
                stack = Stack(db_url, scratch.name, api_url, key, receiver_port, processes)
                one_round(stack, args, min(500, args.tasks))  # warm-up
                profilers = profile(args.profile, processes, count)
                writes_before = table_writes(db_url)
                rounds = [one_round(stack, args, args.tasks) for _ in range(args.rounds)]
                for profiler in profilers:
                    profiler.send_signal(signal.SIGINT)
                    profiler.wait(timeout=60)
                # An idle backend reports its table statistics within about ten seconds.
                time.sleep(11)
                writes = {
                    name: n - writes_before.get(name, 0)
                    for name, n in table_writes(db_url).items()
                    if n != writes_before.get(name, 0)
                }
                report(count, rounds, writes)
        finally:
            stop([*workers, scheduler, api, receiver])
            sim.stop()
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
