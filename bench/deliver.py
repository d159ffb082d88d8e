"""Webhook delivery throughput of one `phonebridge worker` process (with one `phonebridge
scheduler`): deliveries/s to a receiver that answers 200 at once, then the same while a second
subscription's receiver never answers (every attempt to it times out). The healthy receiver should
keep at least 80% of its rate.

Then the burst (issue 24): --burst-events (10,000) events, each to an endpoint paced at
--burst-max-rps (50) and to one without a cap. It prints the capped endpoint's most requests in
any sliding second (at most max_rps), the uncapped one's throughput beside it (next to its rate
alone: the capped one's queue must not slow it), and the time each took to drain. `--burst-only`
skips the first two measurements, `--burst-events 0` the burst.

    .venv/bin/python bench/deliver.py [--events 5000] [--timeout 5] [--burst-only]

It creates a scratch database on PHONEBRIDGE_TEST_ADMIN_URL (default the local postgres),
migrates it, inserts the events and their deliveries directly (not yet due), starts the worker and
the scheduler as real processes, makes the deliveries due at once and times how long the receiver
takes to get them all. The receivers run in a process of their own. The load average is printed
before and after. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from support import scratch_database  # noqa: E402

from service.config import build_settings  # noqa: E402
from service.domain.pacing import most_in_any_window  # noqa: E402
from service.domain.signing import new_secret  # noqa: E402
from service.webhooks.encryption import cipher_for  # noqa: E402

PHONEBRIDGE = str(REPO / ".venv" / "bin" / "phonebridge")
REDIS_URL = os.environ.get("PHONEBRIDGE_BENCH_DELIVER_REDIS_URL", "redis://127.0.0.1:6379/14")
SECRET_KEY = "bench-secret-key-for-webhook-secrets"


# --- the receivers' process ------------------------------------------------------------------


def serve_receivers() -> None:
    """A 200-at-once receiver (counting arrivals per path) and a receiver that accepts
    connections and never answers. Prints both ports, then serves until killed."""
    from aiohttp import web

    arrivals: dict[str, list[float]] = {}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrivals.setdefault(request.path, []).append(time.time())
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        path = request.query["path"]
        times = arrivals.get(path, [])
        body: dict[str, Any] = {
            "count": len(times),
            "first": min(times, default=0),
            "last": max(times, default=0),
        }
        if "times" in request.query:
            body["times"] = times
        return web.json_response(body)

    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/_stats", stats)
        app.router.add_post("/{tail:.*}", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        healthy_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        dead = await asyncio.start_server(never_answer, "127.0.0.1", 0, backlog=4096)
        dead_port = dead.sockets[0].getsockname()[1]
        print(json.dumps({"healthy": healthy_port, "dead": dead_port}), flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# --- setup -----------------------------------------------------------------------------------


def insert_workload(
    db_url: str, urls: list[str], events: int, max_rps: dict[str, int] | None = None
) -> tuple[int, list[int]]:
    """A client with one subscription per URL (paced at `max_rps[url]` when given) and `events`
    completed tasks with their events and deliveries, none due yet. Returns the client id and
    the subscription ids."""
    cipher = cipher_for(build_settings(secret_key=SECRET_KEY))
    paced = max_rps or {}
    now = datetime.now(UTC)
    later = now + timedelta(days=1)
    with psycopg.connect(db_url) as conn:
        client_id = conn.execute(
            "INSERT INTO clients (name) VALUES ('bench') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        subscription_ids = []
        for url in urls:
            public_id = f"sub_{secrets.token_hex(16)}"
            secret = cipher.encrypt(new_secret(os.urandom(32)), public_id)
            subscription_ids.append(
                conn.execute(
                    "INSERT INTO subscriptions (public_id, client_id, url, event_types,"
                    " secret_encrypted, max_rps) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                    (public_id, client_id, url, ["task.completed"], secret, paced.get(url)),
                ).fetchone()[0]  # type: ignore[index]
            )
        conn.execute(
            """
            WITH t AS (
                INSERT INTO tasks (client_id, task_id, state, result, submitted_at, expires_at,
                                   completed_at, poll_count)
                SELECT %(c)s, 'bench-' || g, 'completed',
                       '{"phone_number": "0062********", "phone_status": "ring"}', %(now)s,
                       %(now)s + interval '1 day', %(now)s, 1
                FROM generate_series(1, %(n)s) g
                RETURNING id, task_id
            ), e AS (
                INSERT INTO events (public_id, client_id, task_pk, type, data)
                SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), %(c)s, t.id,
                       'task.completed',
                       jsonb_build_object('task_id', t.task_id, 'state', 'completed',
                           'result', jsonb_build_object('phone_number', '0062********',
                                                        'phone_status', 'ring'),
                           'metadata', '{}'::jsonb)
                FROM t RETURNING id
            )
            INSERT INTO deliveries (public_id, event_id, subscription_id, client_id,
                                    next_attempt_at)
            SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), e.id, s, %(c)s, %(later)s
            FROM e CROSS JOIN unnest(%(subs)s::bigint[]) s
            """,
            {"c": client_id, "now": now, "n": events, "later": later, "subs": subscription_ids},
        )
    return client_id, subscription_ids


def log_file(command: str) -> Any:
    """Where a process's log goes: PHONEBRIDGE_BENCH_LOG_DIR/<command>.log, or nowhere."""
    log_dir = os.environ.get("PHONEBRIDGE_BENCH_LOG_DIR")
    if not log_dir:
        return subprocess.DEVNULL
    return open(Path(log_dir) / f"{command}.log", "wb")


def make_due(db_url: str, client_id: int) -> float:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE deliveries SET next_attempt_at = now() WHERE client_id = %s", (client_id,)
        )
    return time.time()


def stats(port: int, path: str, times: bool = False) -> dict[str, Any]:
    import urllib.request

    query = f"path={path}" + ("&times=1" if times else "")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats?{query}") as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


def wait_for(port: int, path: str, count: int, deadline_s: float) -> dict[str, Any]:
    ends = time.monotonic() + deadline_s
    while time.monotonic() < ends:
        current = stats(port, path)
        if current["count"] >= count:
            return current
        time.sleep(0.05)
    raise SystemExit(f"only {stats(port, path)['count']} of {count} deliveries arrived in time")


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): a figure that holds up on a
    shared machine, where wall-clock rates depend on what else is running."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    db_url: str, ports: dict[str, int], events: int, with_dead: bool, worker_pid: int
) -> float:
    path = f"/hook-{secrets.token_hex(4)}"
    urls = [f"http://127.0.0.1:{ports['healthy']}{path}"]
    if with_dead:
        urls.append(f"http://127.0.0.1:{ports['dead']}/never")
    client_id, _ = insert_workload(db_url, urls, events)
    cpu_before = cpu_seconds(worker_pid)
    due_at = make_due(db_url, client_id)
    done = wait_for(ports["healthy"], path, events, deadline_s=300)
    worker_cpu = cpu_seconds(worker_pid) - cpu_before
    print(
        f"  {events} events{' (+ a dead receiver)' if with_dead else ''}: first arrival "
        f"{done['first'] - due_at:.2f} s after due, last {done['last'] - due_at:.2f} s; "
        f"worker CPU {worker_cpu / events * 1e6:.0f} us per healthy delivery",
        flush=True,
    )
    return events / float(done["last"] - due_at)


def measure_burst(
    db_url: str, ports: dict[str, int], events: int, max_rps: int, alone: float | None
) -> None:
    """`events` events to a paced endpoint and an uncapped one at once: the paced one's most in
    any sliding second, the uncapped one's rate, each one's time to drain."""
    tag = secrets.token_hex(4)
    capped = f"/capped-{tag}"
    uncapped = f"/uncapped-{tag}"
    capped_url = f"http://127.0.0.1:{ports['healthy']}{capped}"
    urls = [capped_url, f"http://127.0.0.1:{ports['healthy']}{uncapped}"]
    client_id, _ = insert_workload(db_url, urls, events, {capped_url: max_rps})
    due_at = make_due(db_url, client_id)
    free = wait_for(ports["healthy"], uncapped, events, deadline_s=600)
    free_rate = events / float(free["last"] - due_at)
    beside = "" if alone is None else f" ({free_rate / alone:.0%} of its rate alone)"
    print(
        f"  uncapped endpoint beside it: {free_rate:8.0f} deliveries/s{beside}, drained in "
        f"{free['last'] - due_at:.1f} s",
        flush=True,
    )
    # The paced one takes events / (max_rps / 1.1) seconds: give it twice that.
    wait_for(ports["healthy"], capped, events, deadline_s=2.2 * events / max_rps + 120)
    paced = stats(ports["healthy"], capped, times=True)
    times: list[float] = paced["times"]
    # The receivers share a process: while the uncapped endpoint floods it, its own loop may
    # stamp arrivals that waited together; afterwards the paced endpoint has it to itself.
    alone_after = [moment for moment in times if moment > free["last"]]
    steady = events / float(paced["last"] - paced["first"])
    print(
        f"  capped endpoint (max_rps {max_rps}): at most {most_in_any_window(times)} requests in "
        f"any sliding second ({most_in_any_window(alone_after)} once the uncapped one had "
        f"drained), {steady:.1f}/s on average, drained in {paced['last'] - due_at:.1f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=5.0, help="webhook timeout, seconds")
    parser.add_argument("--burst-events", type=int, default=10_000)
    parser.add_argument("--burst-max-rps", type=int, default=50)
    parser.add_argument("--burst-only", action="store_true", help="measure the burst alone")
    parser.add_argument("--serve-receivers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receivers:
        serve_receivers()
        return

    redis.Redis.from_url(REDIS_URL).flushdb()
    with scratch_database("phonebridge_bench_deliver", migrated=True) as database:
        env = {
            **os.environ,
            "PHONEBRIDGE_DATABASE_URL": database.url,
            "PHONEBRIDGE_REDIS_URL": REDIS_URL,
            "PHONEBRIDGE_SECRET_KEY": SECRET_KEY,
            "PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE": "true",
            "PHONEBRIDGE_WEBHOOK_TIMEOUT_S": str(args.timeout),
            "PHONEBRIDGE_LOG_LEVEL": "WARNING",
            # The worker's engine needs upstream credentials to start; no upstream call is made.
            "PHONEBRIDGE_UPSTREAM_API_ID": "bench",
            "PHONEBRIDGE_UPSTREAM_API_SECRET": "bench-unused",
        }
        receivers = subprocess.Popen(
            [sys.executable, __file__, "--serve-receivers"], stdout=subprocess.PIPE, text=True
        )
        processes: list[subprocess.Popen[Any]] = [receivers]
        try:
            assert receivers.stdout is not None
            ports = json.loads(receivers.stdout.readline())
            for command in ("worker", "scheduler"):
                processes.append(
                    subprocess.Popen(
                        [PHONEBRIDGE, command],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=log_file(command),
                        cwd=REPO,
                    )
                )
            print(f"load average before: {load_average()}", flush=True)
            # Warm up: the worker's first task starts its engine loop and connections.
            worker_pid = processes[1].pid
            measure(database.url, ports, 50, with_dead=False, worker_pid=worker_pid)
            alone = None
            if not args.burst_only:
                alone = measure(
                    database.url, ports, args.events, with_dead=False, worker_pid=worker_pid
                )
                print(f"healthy receiver alone:            {alone:8.0f} deliveries/s")
                beside_dead = measure(
                    database.url, ports, args.events, with_dead=True, worker_pid=worker_pid
                )
                print(
                    f"beside a receiver that times out:  {beside_dead:8.0f} deliveries/s "
                    f"({beside_dead / alone:.0%} of the rate alone; timeout {args.timeout:g} s)"
                )
            if args.burst_events > 0:
                print(
                    f"burst: {args.burst_events} events to a paced and an uncapped endpoint "
                    "at once",
                    flush=True,
                )
                measure_burst(database.url, ports, args.burst_events, args.burst_max_rps, alone)
            print(f"load average after: {load_average()}")
        finally:
            for process in reversed(processes):
                process.send_signal(signal.SIGTERM)
            for process in reversed(processes):
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
