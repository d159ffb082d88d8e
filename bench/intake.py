"""Intake throughput of `phonebridge api`: tasks/s for single POSTs at concurrency 32 and for
batches of 1000.

    .venv/bin/python bench/intake.py                      # starts its own API on a scratch database
    .venv/bin/python bench/intake.py --workers 2          # the same with `api --workers 2`
    .venv/bin/python bench/intake.py --url http://127.0.0.1:8000 --key pbk_...   # a running API
    .venv/bin/python bench/intake.py --noisy-seconds 10 --single-tasks 0 --batches 0   # limits only

Without --url it creates a scratch database on PHONEBRIDGE_TEST_ADMIN_URL (default the local
postgres), migrates it, mints a key with `phonebridge api-key create`, starts `phonebridge api`
(one uvicorn process unless --workers) and drops the database at the end. The load comes from this
process (aiohttp), separate from the server's. Figures are medians of --rounds rounds; the load
average is printed before and after, since other work on the machine skews them. Run it alone:
`flock /tmp/phonebridge-bench.lock .venv/bin/python bench/intake.py`.

Beside the single POSTs it serves a bare endpoint of the same shape (bench/bare_intake.py:
FastAPI, a pydantic body, an asyncpg INSERT into the same table; one uvicorn process like the API)
and sends it the same load the same way, its rounds alternating with the API's, and prints the
API's rate as a ratio of the bare one's (issue 28: at least 1.2). Then one more round of each
under py-spy (bench/profiles.py) gives the CPU microseconds per request of each layer, the API's
beside the bare endpoint's (--profile FOLDER keeps the collapsed stacks; --no-profile skips it).

The batch phase prints the API's CPU per task, and then the same rows (1000 per statement, the
same batch concurrency) inserted into the same table with nothing in between: `INSERT ... SELECT
FROM unnest(...) ON CONFLICT DO NOTHING RETURNING task_id` (what registration must answer) and
`COPY`, each as tasks/s and the batch API's rate as a fraction of them (scratch database only).

The last phase (--noisy-seconds, 0 to skip) measures per-client limits: a second client limited
to --noisy-rps calls a second (`phonebridge api-key limits`) sends as fast as it can, mostly
answered 429, while the first client registers tasks at a modest concurrency; it prints both
clients' p50/p99 latency, next to the first client's alone, so a limited client that slows the
others shows at once. With --url, pass the limited client's key as --noisy-key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import profiles
import psutil
import psycopg
from support import scratch_database

REPO = Path(__file__).resolve().parent.parent
PHONEBRIDGE = str(REPO / ".venv" / "bin" / "phonebridge")
UVICORN = str(REPO / ".venv" / "bin" / "uvicorn")
REDIS_URL = os.environ.get("PHONEBRIDGE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


@dataclass(frozen=True)
class Server:
    """A server under load: where it answers, its key, and its process (for CPU and py-spy)."""

    url: str
    key: str
    pid: int | None


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


# wrk's Lua script: one POST per request, each with a task_id never used before, and a summary
# line of JSON at the end. Its latency distribution comes out as the 1st to 100th percentiles.
WRK_SCRIPT = r"""
local counter = 0
local run = os.getenv("PHONEBRIDGE_BENCH_RUN")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PHONEBRIDGE_BENCH_KEY")

request = function()
  counter = counter + 1
  local body = string.format('{"task_id":"w-%s-%d","metadata":{"n":%d}}', run, counter, counter)
  return wrk.format(nil, "/v1/tasks", nil, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  local percentiles = {}
  for p = 1, 100 do
    percentiles[p] = latency:percentile(p)
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "failures": %d, "latency_us": [%s]}\n',
    summary.requests, summary.duration,
    errors.status + errors.connect + errors.read + errors.write + errors.timeout,
    table.concat(percentiles, ",")))
end
"""


async def single_round_wrk(url: str, key: str, seconds: float, concurrency: int) -> Round:
    """The same load as single_round, from wrk: a client in C costs the shared CPUs a fraction
    of what aiohttp does per request, so the figure is the server's rather than the client's."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", script.name, url]
        env = {
            **os.environ,
            "PHONEBRIDGE_BENCH_KEY": key,
            "PHONEBRIDGE_BENCH_RUN": secrets.token_hex(4),
        }
        finished = await asyncio.to_thread(
            subprocess.run, command, env=env, capture_output=True, text=True, check=True
        )
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    return Round(
        summary["requests"],
        summary["duration_us"] / 1e6,
        summary["failures"],
        [us / 1000 for us in summary["latency_us"]],
    )


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
    # Too short a round for the CPU clock's resolution says nothing (and would divide by 0).
    if cpu and all(c > 0 for c in cpu):
        per_task_us = statistics.median(c / r.tasks * 1e6 for c, r in zip(cpu, rounds, strict=True))
        busy = statistics.median(c / r.seconds for c, r in zip(cpu, rounds, strict=True))
        print(
            f"  API process CPU: {per_task_us:,.0f} us per task, busy {busy:.0%} of one core; "
            f"one fully busy core would take {1e6 / per_task_us:,.0f} tasks/s"
        )


def process_cpu_s(pid: int | None) -> float | None:
    """User plus system CPU seconds of a process and its children (the workers of
    `phonebridge api --workers N`), to tell load from contention."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue  # a worker that just exited
        total += times.user + times.system
    return total


async def timed(pid: int | None, work: Any) -> Round:
    before = process_cpu_s(pid)
    result: Round = await work
    after = process_cpu_s(pid)
    if before is not None and after is not None:
        result.server_cpu_s = after - before
    return result


# The bare insert the batch route is compared with: the same columns, the same conflict rule.
BARE_UNNEST = """
    INSERT INTO tasks (client_id, task_id, state, metadata, submitted_at, registered_at,
                       expires_at, next_poll_at, poll_count, updated_at)
    SELECT %(client_id)s, entry.task_id, 'pending', entry.metadata, now(), now(),
           now() + interval '1 day', now(), 0, now()
    FROM unnest(%(task_ids)s::text[], %(metadata)s::jsonb[]) AS entry(task_id, metadata)
    ON CONFLICT (client_id, task_id) DO NOTHING
    RETURNING task_id
"""
BARE_COPY = """
    COPY tasks (client_id, task_id, state, metadata, submitted_at, registered_at, expires_at,
                next_poll_at, poll_count, updated_at) FROM STDIN
"""


async def bare_insert_round(
    db_url: str, client_id: int, batches: int, batch_size: int, concurrency: int, how: str
) -> Round:
    """The batch phase's rows inserted straight into PostgreSQL, `how` = unnest or copy."""
    from datetime import UTC, datetime, timedelta

    run = secrets.token_hex(4)
    counter = iter(range(batches))
    latencies: list[float] = []

    async def client() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            for b in counter:
                ids = [f"x-{run}-{b}-{i}" for i in range(batch_size)]
                started = time.perf_counter()
                if how == "unnest":
                    metadata = [f'{{"i":{i}}}' for i in range(batch_size)]
                    params = {"client_id": client_id, "task_ids": ids, "metadata": metadata}
                    await (await conn.execute(BARE_UNNEST, params)).fetchall()
                else:
                    now = datetime.now(UTC)
                    later = now + timedelta(days=1)
                    async with conn.cursor() as cursor, cursor.copy(BARE_COPY) as copy:
                        for i, task_id in enumerate(ids):
                            await copy.write_row(
                                (
                                    client_id,
                                    task_id,
                                    "pending",
                                    f'{{"i":{i}}}',
                                    now,
                                    now,
                                    later,
                                    now,
                                    0,
                                    now,
                                )
                            )
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Round(batches * batch_size, time.perf_counter() - started, 0, latencies)


async def compare_with_bare_inserts(
    args: argparse.Namespace, db_url: str, batch_rate: float
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT id FROM clients WHERE name = 'bench'")).fetchone()
    assert row is not None
    for how in ("unnest", "copy"):
        rounds = [
            await bare_insert_round(
                db_url, row[0], args.batches, args.batch_size, args.batch_concurrency, how
            )
            for _ in range(args.rounds)
        ]
        rate = statistics.median(r.rate for r in rounds)
        print(
            f"  bare {how:6s} insert of the same rows: {rate:,.0f} tasks/s (median of "
            f"{len(rounds)}); the batch API reaches {batch_rate / rate:.2f} of it"
        )


async def measure(args: argparse.Namespace, api: Server, db_url: str | None = None) -> None:
    print(f"load average before: {_load_average()}")
    connector = aiohttp.TCPConnector(limit=max(args.concurrency, args.batch_concurrency))
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the server (connection pool, prepared statements, key cache) before measuring.
        await single_round(session, api.url, api.key, 500, args.concurrency)
        # A phase asked to do nothing (--single-tasks 0 or --batches 0) is skipped, not reported.
        if (args.single_seconds if args.client == "wrk" else args.single_tasks) > 0:
            if db_url is None:  # a running API: no bare endpoint beside it
                await compare_singles(args, session, api, None)
            else:
                with bare_endpoint(db_url, api.key, args.workers) as bare:
                    await single_round(session, bare.url, bare.key, 500, args.concurrency)
                    await compare_singles(args, session, api, bare)
        if args.batches > 0 and args.batch_size > 0:
            batches = [
                await timed(
                    api.pid,
                    batch_round(
                        session,
                        api.url,
                        api.key,
                        args.batches,
                        args.batch_size,
                        args.batch_concurrency,
                    ),
                )
                for _ in range(args.rounds)
            ]
            report(
                f"POST /v1/tasks/batch, {args.batch_size} per batch, "
                f"concurrency {args.batch_concurrency}",
                batches,
            )
            if db_url is not None:
                batch_rate = statistics.median(r.rate for r in batches)
                await compare_with_bare_inserts(args, db_url, batch_rate)
        if args.noisy_seconds > 0 and args.noisy_key:
            await noisy_neighbour(session, api.url, api.key, args.noisy_key, args)
    print(f"load average after: {_load_average()}")


async def single_rounds_of(
    args: argparse.Namespace, session: aiohttp.ClientSession, server: Server
) -> Round:
    if args.client == "wrk":
        work = single_round_wrk(server.url, server.key, args.single_seconds, args.concurrency)
    else:
        work = single_round(session, server.url, server.key, args.single_tasks, args.concurrency)
    return await timed(server.pid, work)


async def compare_singles(
    args: argparse.Namespace, session: aiohttp.ClientSession, api: Server, bare: Server | None
) -> None:
    """The API's single POSTs, and the bare endpoint's in alternate rounds (so that the load of
    the shared machine weighs on both alike), their ratio, then a profile of each."""
    name = f"single POST /v1/tasks, concurrency {args.concurrency} ({args.client})"
    rounds: list[Round] = []
    bare_rounds: list[Round] = []
    for _ in range(args.rounds):
        rounds.append(await single_rounds_of(args, session, api))
        if bare is not None:
            bare_rounds.append(await single_rounds_of(args, session, bare))
    report(name, rounds)
    if bare is None:
        return
    report("  bare FastAPI + pydantic + asyncpg INSERT, the same way", bare_rounds)
    pairs = ", ".join(f"{a.rate / b.rate:.2f}" for a, b in zip(rounds, bare_rounds, strict=True))
    ratio = statistics.median(r.rate for r in rounds) / statistics.median(
        r.rate for r in bare_rounds
    )
    print(f"  the API reaches {ratio:.2f}x the bare endpoint (round by round: {pairs})")
    if args.profile is not None:
        await profile_singles(args, session, api, bare, Path(args.profile))


async def profile_singles(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    api: Server,
    bare: Server,
    folder: Path,
) -> None:
    """One more round of each server under py-spy: its CPU per request (from the process's CPU
    clock) split by the layers' shares of the samples (bench/profiles.py)."""
    per_layer: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    for label, server in (("api", api), ("bare", bare)):
        if server.pid is None:
            return
        output = folder / f"intake-single-{label}.txt"
        profiler = profiles.record(server.pid, output)
        await asyncio.sleep(0.5)  # py-spy attached before the round starts
        measured = await single_rounds_of(args, session, server)
        profiles.stop(profiler)
        if measured.server_cpu_s is None or not output.exists():
            print(f"  no profile of the {label} process (py-spy could not attach?)")
            return
        totals[label] = measured.server_cpu_s / measured.tasks * 1e6
        for layer, share in profiles.layer_shares(output).items():
            per_layer.setdefault(layer, {})[label] = share * totals[label]
    print(
        f"  CPU per request by layer, from py-spy (one more round each, {folder}/"
        "intake-single-*.txt):"
    )
    print(f"    {'layer':44s} {'API us':>8s} {'bare us':>8s}")
    for layer, figures in sorted(per_layer.items(), key=lambda item: -item[1].get("api", 0.0)):
        print(f"    {layer:44s} {figures.get('api', 0.0):8.0f} {figures.get('bare', 0.0):8.0f}")
    print(f"    {'total (process CPU clock)':44s} {totals['api']:8.0f} {totals['bare']:8.0f}")


async def noisy_neighbour(
    session: aiohttp.ClientSession, url: str, key: str, noisy_key: str, args: argparse.Namespace
) -> None:
    """The quiet client's latency alone, then beside a client pushing past its rate limit."""
    seconds = args.noisy_seconds

    async def hammer(
        client_key: str, stop_at: float, latencies: list[float], codes: dict[int, int]
    ) -> None:
        run = secrets.token_hex(4)
        headers = {"Authorization": f"Bearer {client_key}", "Content-Type": "application/json"}
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            body = f'{{"task_id":"n-{run}-{n}"}}'
            started = time.perf_counter()
            async with session.post(f"{url}/v1/tasks", data=body, headers=headers) as response:
                await response.read()
                codes[response.status] = codes.get(response.status, 0) + 1
            latencies.append((time.perf_counter() - started) * 1000)

    Phase = tuple[list[float], list[float], dict[int, int], dict[int, int]]

    async def phase(with_noise: bool) -> Phase:
        stop_at = time.monotonic() + seconds
        quiet: list[float] = []
        noisy: list[float] = []
        quiet_codes: dict[int, int] = {}
        noisy_codes: dict[int, int] = {}
        work = [hammer(key, stop_at, quiet, quiet_codes) for _ in range(args.quiet_concurrency)]
        if with_noise:
            work += [
                hammer(noisy_key, stop_at, noisy, noisy_codes)
                for _ in range(args.noisy_concurrency)
            ]
        await asyncio.gather(*work)
        return quiet, noisy, quiet_codes, noisy_codes

    def percentiles(latencies: list[float]) -> str:
        ordered = sorted(latencies)
        if not ordered:
            return "no requests"
        p50 = ordered[len(ordered) // 2]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return f"{len(ordered) / seconds:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"

    alone, _, _, _ = await phase(with_noise=False)
    quiet, noisy, quiet_codes, noisy_codes = await phase(with_noise=True)
    print(f"per-client limits, {seconds} s each, quiet at concurrency {args.quiet_concurrency}:")
    print(f"  quiet client alone:              {percentiles(alone)}")
    print(f"  quiet client beside a noisy one: {percentiles(quiet)}; answers {quiet_codes}")
    print(
        f"  noisy client (limit {args.noisy_rps}/s, concurrency {args.noisy_concurrency}): "
        f"{percentiles(noisy)}; answers {noisy_codes}"
    )


def _load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def scratch_api(workers: int, noisy_rps: int) -> Iterator[tuple[Server, str, str]]:
    with scratch_database("phonebridge_bench") as database:
        env = {
            **os.environ,
            "PHONEBRIDGE_DATABASE_URL": database.sqlalchemy_url,
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
            noisy = (
                subprocess.run(
                    [PHONEBRIDGE, "api-key", "create", "--name", "bench-noisy"],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            subprocess.run(
                [
                    PHONEBRIDGE,
                    "api-key",
                    "limits",
                    "--client",
                    "bench-noisy",
                    "--max-rps",
                    str(noisy_rps),
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            port = free_port()
            workers_option = ["--workers", str(workers)] if workers != 1 else []
            server = subprocess.Popen(
                [PHONEBRIDGE, "api", "--port", str(port), *workers_option], env=env
            )
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url)
            yield Server(url, key, server.pid), noisy, database.url
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=20)


@contextmanager
def bare_endpoint(db_url: str, key: str, workers: int) -> Iterator[Server]:
    """bench/bare_intake.py served as `phonebridge api` is: one uvicorn process (or `workers`),
    uvloop and httptools, no access log; on the same database, inserting for the bench client.
    Started for the single POSTs only: its pool and the API's would otherwise hold up to 64 of
    the shared database's connections through the other phases."""
    port = free_port()
    bare = subprocess.Popen(
        [
            UVICORN,
            "--app-dir",
            str(REPO / "bench"),
            "bare_intake:create_app",
            "--factory",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env={
            **os.environ,
            "BARE_INTAKE_DATABASE_URL": db_url,
            "BARE_INTAKE_CLIENT_ID": str(client_id(db_url, "bench")),
        },
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url)
        yield Server(url, key, bare.pid)
    finally:
        bare.terminate()
        bare.wait(timeout=20)


def client_id(db_url: str, name: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT id FROM clients WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


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
    parser.add_argument(
        "--client",
        choices=("wrk", "aiohttp"),
        default="wrk" if shutil.which("wrk") else "aiohttp",
        help="what sends the single POSTs (default wrk when installed: it leaves the CPUs to "
        "the server; aiohttp needs about as much CPU per request as the API itself)",
    )
    parser.add_argument("--single-seconds", type=int, default=10, help="per round, with wrk")
    parser.add_argument("--single-tasks", type=int, default=10_000, help="per round, with aiohttp")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pid", type=int, help="the API's process id, to report its CPU use")
    parser.add_argument(
        "--workers", type=int, default=1, help="`phonebridge api --workers` of the scratch API"
    )
    parser.add_argument("--noisy-seconds", type=int, default=5, help="0: no limits phase")
    parser.add_argument("--noisy-key", help="with --url: the key of a client with a rate limit")
    parser.add_argument("--noisy-rps", type=int, default=50, help="that client's limit")
    parser.add_argument("--noisy-concurrency", type=int, default=16)
    parser.add_argument("--quiet-concurrency", type=int, default=4)
    parser.add_argument(
        "--profile",
        metavar="FOLDER",
        default=tempfile.mkdtemp(prefix="phonebridge-intake-profile-"),
        help="where py-spy's collapsed stacks of the profiled rounds go (default: a new "
        "temporary folder)",
    )
    parser.add_argument(
        "--no-profile", dest="profile", action="store_const", const=None, help="no py-spy round"
    )
    args = parser.parse_args()
    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        api = Server(args.url.rstrip("/"), args.key, args.pid)
        asyncio.run(measure(args, api))
        return 0
    with scratch_api(args.workers, args.noisy_rps) as (api, noisy_key, db_url):
        args.noisy_key = noisy_key
        asyncio.run(measure(args, api, db_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
