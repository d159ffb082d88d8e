"""Detection lag: how late a subscriber hears of an answer once upstream has it ready.

One run, side by side, on checks whose answers become ready after a lognormal time (median 15 s,
sigma 0.7 by default) with the default poll schedule (`adaptive`: backoff from 2 s until 50
completions are known, then the learnt schedule; `--schedule backoff` for the plain one):

- (a) task_ids registered with `POST /v1/tasks`, polled only;
- (b) checks submitted through `POST /v1/checks`, the simulator calling each one's callback;
- (c) as (b), with 20% of the callbacks lost: twice, the first checks after the losses begin
  (phonebridge still trusts the client's callbacks: their safety net finds the lost ones) and as
  many again once it has learnt that they get lost (service/domain/callback_trust.py); the checks
  whose callback was lost are printed beside the same checks in (a), polled without a callback.

First `--warmup` task_ids (other delays of the same mix) are registered and polled until all are
answered, so the completion-time estimate is warm, as in a deployment that has run a while; their
line is printed, not compared.

Per variant it prints the detection lag (webhook received - the moment the simulator's answer
became ready) p50/p95/max and upstream calls per check (the submit included). Everything runs as
an operator runs it: `phonebridge upstream-sim`, `api`, `worker` and `scheduler` processes on a
scratch database, and a webhook receiver in this process.

    .venv/bin/python bench/lag.py [--checks 300] [--warmup 300] [--variants abc] [--median-s 15]
                                  [--sigma 0.7] [--schedule backoff|adaptive]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import psycopg
import redis
from support import scratch_database

from service.sim.server import SimProcess, phonebridge_executable

REDIS_URL = os.environ.get("PHONEBRIDGE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
API_ID, API_SECRET = "bench-id", "bench-secret"
# Spread the checks' start over this long, as real traffic would arrive.
ARRIVAL_SPREAD_S = 10.0
# Give up waiting for webhooks this long after the last answer became ready.
GRACE_S = 400.0


class Receiver:
    """A webhook receiver that notes when each task's event arrived."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                at = time.time()
                task_id = orjson.loads(body)["data"]["task_id"]
                with lock:
                    received.setdefault(task_id, at)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """Simulator, API, worker and scheduler on a migrated database, with one client subscribed."""

    def __init__(self, args: argparse.Namespace, receiver: Receiver, db_url: str) -> None:
        self.db_url = db_url
        redis.Redis.from_url(REDIS_URL).flushdb()
        self.sim = SimProcess(["--api-id", API_ID, "--api-secret", API_SECRET])
        self.sim.start()
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PHONEBRIDGE_")},
            "PHONEBRIDGE_DATABASE_URL": self.db_url,
            "PHONEBRIDGE_REDIS_URL": REDIS_URL,
            "PHONEBRIDGE_UPSTREAM_BASE_URL": self.sim.base_url,
            "PHONEBRIDGE_UPSTREAM_API_ID": API_ID,
            "PHONEBRIDGE_UPSTREAM_API_SECRET": API_SECRET,
            "PHONEBRIDGE_PUBLIC_URL": self.api_url,
            "PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE": "true",
            "PHONEBRIDGE_SECRET_KEY": "bench-secret-key-for-webhook-secrets",
            "PHONEBRIDGE_LOG_LEVEL": "WARNING",
            "PHONEBRIDGE_POLL_SCHEDULE": args.schedule,
        }
        exe = phonebridge_executable()
        self.processes = [
            subprocess.Popen([exe, "api", "--port", str(port)], env=self.env),
            subprocess.Popen([exe, "worker"], env=self.env),
            subprocess.Popen([exe, "scheduler"], env=self.env),
        ]
        key = subprocess.run(
            [exe, "api-key", "create", "--name", "bench"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        self.http = httpx.Client(
            base_url=self.api_url, headers={"authorization": f"Bearer {key}"}, timeout=30
        )
        deadline = time.time() + 60
        while True:
            try:
                if self.http.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        created = self.http.post("/v1/subscriptions", json={"url": receiver.url})
        created.raise_for_status()

    def callbacks_trusted(self) -> str:
        """The client's callback record (service/domain/callback_trust.py), as stored."""
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute("SELECT heard, missed, trusted FROM callback_records").fetchone()
        if row is None:
            return "yes (nothing counted yet)"
        heard, missed, trusted = row
        return f"{'yes' if trusted else 'no'} (heard {heard:.0f}, missed {missed:.0f})"

    def stop(self) -> None:
        self.http.close()
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(timeout=30)
        self.sim.stop()


def lognormal_delays(n: int, median_s: float, sigma: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(median_s), sigma) for _ in range(n)]


def run_registered(stack: Stack, delays: list[float], tag: str) -> dict[str, float]:
    """(a): the simulator gets each task with its delay; phonebridge gets the task_id."""
    ready: dict[str, float] = {}
    spacing = ARRIVAL_SPREAD_S / len(delays)
    for i, delay in enumerate(delays):
        task_id = f"sim-ring-0-{delay:.3f}s-{tag}{i}"
        submitted = time.time()
        stack.sim.control.register(task_id, script=f"ring-0-{delay:.3f}s", submitted_at=submitted)
        at = datetime.fromtimestamp(submitted, UTC).isoformat()
        stack.http.post("/v1/tasks", json={"task_id": task_id, "submitted_at": at})
        ready[task_id] = submitted + delay
        time.sleep(spacing)
    return ready


def run_submitted(
    stack: Stack, delays: list[float], lose: float, tag: str = "b"
) -> dict[str, float]:
    """(b), (c): checks through POST /v1/checks; the simulator draws nothing, each check's delay
    is set before its submit (a submit script), and its callback is lost with probability
    `lose`."""
    stack.sim.control.set_callbacks(lose=lose, delay_s=0.0, duplicate=0.0)
    ready: dict[str, float] = {}
    spacing = ARRIVAL_SPREAD_S / len(delays)
    for i, delay in enumerate(delays):
        stack.sim.control.configure(submit_script=f"ring-0-{delay:.3f}s")
        answer = stack.http.post(
            "/v1/checks",
            json={"phone_number": f"5255{i:08d}"},  # Mexico City numbers
            headers={"idempotency-key": f"bench-{tag}-{i}"},
        )
        answer.raise_for_status()
        task_id = answer.json()["task_id"]
        ready[task_id] = stack.sim.control.task(task_id)["submitted_at"] + delay
        time.sleep(spacing)
    return ready


def report(
    name: str,
    stack: Stack,
    receiver: Receiver,
    ready: dict[str, float],
    submits: int,
    lost: set[str] | None = None,
    polled_only: list[float] | None = None,
) -> list[float]:
    """Wait for every check's webhook, print the variant's line (and its lost callbacks'), and
    return the lags in check order (the same delays in every variant)."""
    deadline = max(ready.values()) + GRACE_S
    while time.time() < deadline and any(t not in receiver.received for t in ready):
        time.sleep(0.5)
    by_check = [receiver.received.get(t, math.inf) - at for t, at in ready.items()]
    lags = [lag for lag in by_check if math.isfinite(lag)]
    calls = sum(len(stack.sim.control.calls(task_id=t, endpoint="task_result")) for t in ready)
    missing = len(by_check) - len(lags)
    per_check = (calls + submits) / len(ready)
    print(f"{name:40s} {len(ready):5d} {missing:7d} {figures(lags)} {per_check:10.2f}")
    if lost:
        indices = [i for i, task_id in enumerate(ready) if task_id in lost]
        lost_lags = [by_check[i] for i in indices if math.isfinite(by_check[i])]
        print(
            f"{'  of which callback lost':40s} {len(indices):5d} "
            f"{len(indices) - len(lost_lags):7d} {figures(lost_lags)}"
        )
        if polled_only is not None:
            same = [polled_only[i] for i in indices]
            print(f"{'  the same checks in (a)':40s} {len(same):5d} {0:7d} {figures(same)}")
    sys.stdout.flush()
    return by_check


def figures(lags: list[float]) -> str:
    if not lags:
        return f"{'-':>8s} {'-':>8s} {'-':>8s}"
    return f"{percentile(lags, 0.5):8.2f} {percentile(lags, 0.95):8.2f} {max(lags):8.2f}"


def run_variants(args: argparse.Namespace, db_url: str) -> None:
    receiver = Receiver()
    stack = Stack(args, receiver, db_url)
    polled_only: list[float] | None = None
    try:
        if args.warmup:
            warmup = lognormal_delays(args.warmup, args.median_s, args.sigma, args.seed + 1)
            ready = run_registered(stack, warmup, "w")
            report("warm-up (not compared)", stack, receiver, ready, submits=0)
        delays = lognormal_delays(args.checks, args.median_s, args.sigma, args.seed)
        if "a" in args.variants:
            ready = run_registered(stack, delays, "a")
            polled_only = report("(a) registered, polled only", stack, receiver, ready, submits=0)
        if "b" in args.variants:
            ready = run_submitted(stack, delays, lose=0.0)
            report("(b) submitted, callbacks", stack, receiver, ready, submits=len(ready))
            print(f"{'  callbacks trusted after it':40s} {stack.callbacks_trusted()}")
        if "c" in args.variants:
            # Twice: the first checks after the losses begin (phonebridge still trusts this
            # client's callbacks, learnt in (b)), then as many again once it has seen them lost.
            for phase, title in (("c1", "first after losses begin"), ("c2", "steady")):
                ready = run_submitted(stack, delays, lose=0.2, tag=phase)
                lost = set(stack.sim.control.lost_callbacks())
                report(
                    f"(c) 20% lost, {title}",
                    stack,
                    receiver,
                    ready,
                    submits=len(ready),
                    lost=lost & set(ready),
                    polled_only=polled_only,
                )
                print(f"{'  callbacks trusted after it':40s} {stack.callbacks_trusted()}")
    finally:
        stack.stop()
        receiver.stop()


def _stop(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=300, help="task_ids run first, not compared")
    parser.add_argument("--variants", default="abc")
    parser.add_argument("--median-s", type=float, default=15.0)
    parser.add_argument("--sigma", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--schedule",
        choices=["backoff", "adaptive"],
        default="adaptive",
        help="PHONEBRIDGE_POLL_SCHEDULE of the stack (backoff: the plain 2 s doubling)",
    )
    args = parser.parse_args()
    # Stopped with SIGTERM (a background job ignores SIGINT), it still stops its processes and
    # drops its scratch database.
    signal.signal(signal.SIGTERM, _stop)
    print(f"load average before: {os.getloadavg()}", flush=True)
    print(
        f"{args.checks} checks per variant, ready after lognormal(median {args.median_s} s, "
        f"sigma {args.sigma}); lags in seconds",
        flush=True,
    )
    print(
        f"{'variant':40s} {'n':>5s} {'missing':>7s} {'p50':>8s} {'p95':>8s} {'max':>8s} "
        f"{'calls/chk':>10s}",
        flush=True,
    )
    with scratch_database("phonebridge_bench", migrated=True) as database:
        run_variants(args, database.url)
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
