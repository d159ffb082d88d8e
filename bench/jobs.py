"""Check jobs (issue 23): the figures the issue asks for, each a part of its own.

- (a) throughput: a job of --items numbers (20,000) on the simulator, whose answers are ready 2 s
  after each submit and which calls each check's callback (PHONEBRIDGE_PUBLIC_URL set), at a
  ceiling of --ceiling (200) upstream calls a second. Prints items/s (from the job's
  started_at to its finished_at) against the goal, 0.9 x (ceiling / upstream calls per item),
  and the calls per item (simulator calls while the job ran, less the single checks' own); the
  steady calls/s against the ceiling and its timeline (SAFETY_FACTOR x the ceiling), and the
  workers' slots of that timeline (their exporters) with those left unused by late calls: a
  steady rate short of the timeline is slots missed or slots nobody booked.
- (b) interactive beside it: --checks (50) `POST /v1/checks` sent while the job runs: every one
  should answer 201 (503s counted), and the time from the answer being ready upstream to its
  webhook arriving, p50/p95/max (goal: p95 < 1 s).
- (c) memory: creating a --memory-items (100,000) item CSV job: the API's RSS growth (goal
  < 100 MiB) and how long the create took to answer (goal < 10 s); then the worker's and the
  scheduler's peak RSS while the job runs for --watch-s, after which it is cancelled.
- (d) PostgreSQL: the bytes a queued item costs (its `check_job_items` row and its
  `scheduled_submits` row, indexes and TOAST included) at the largest of --queued (1,000,000),
  and one claim of the next --claim (500) items to submit (`claim_due_submits`, the scheduler's
  statement) timed at each size, as bench/scale.py does for tasks. Rows are inserted with SQL
  straight into the schema's tables: no API, no engine.
- (v) reading a finished job: `GET /v1/check-jobs/{id}`'s work (the job's row and its view,
  `service/features/check_jobs.py` `job_view`), median of 15 reads, for a completed job of each
  of --view-items (20,000, 100,000) items with their completed tasks, inserted with SQL: counting
  its items again at each read against the counts it kept when it finished; and the same job
  read as a running one is by its client (REST, portal), its count kept between reads while it
  is young (service/features/job_counts.py).
- (s) the simulator alone: --sim-submits (20,000) submits at --ceiling a second, each with a
  callback to a local receiver: callbacks sent late (sent - due) p50/p95/max, any lost, and the
  simulator's RSS. Its callbacks go out from a heap through 32 senders (service/sim/callbacks.py).

Parts (a)-(c) run a real stack as an operator would (`phonebridge upstream-sim`, `api`,
`worker`, `scheduler` on a scratch database) and use only the REST API; (d), (v) and (s) need
no stack. The load average is printed before and after.

    .venv/bin/python bench/jobs.py [--parts abcdvs] [--items 20000] [--checks 50]
        [--memory-items 100000] [--watch-s 30] [--queued 10000,1000000] [--claim 500]
        [--view-items 20000,100000] [--sim-submits 20000] [--ceiling 200] [--workers 1] [--quick]

--quick: sizes a tenth or less (2,000 items, 10,000 for (c), 10,000 and 100,000 queued,
2,000 and 10,000 for (v), 2,000 simulator submits) to try the bench out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import psycopg
import redis
from lag import Receiver, free_port, percentile
from support import cpu_s, process_tree, scratch_database
from wire import WireCalls

from service.domain.job_count_age import shown_for_s
from service.sim.calls import busiest_window
from service.sim.server import SimProcess, phonebridge_executable
from service.upstream.ratelimit import SAFETY_FACTOR

REDIS_URL = os.environ.get("PHONEBRIDGE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
API_ID, API_SECRET = "bench-id", "bench-secret"
READY_AFTER_S = 2.0
# (a)'s job, (b)'s checks and (c)'s job use numbers of different cities: none is a duplicate of
# another part's, and max_age_s (0) caches nothing.
JOB_PREFIX, CHECK_PREFIX, MEMORY_PREFIX = "5255", "5233", "5281"
POLL_S = 0.5
JOB_TIMEOUT_S = 3600.0
CLIENTS = 10
# (a)'s steady state: from this long after the job starts to this long before it ends.
STEADY_EDGE_S = 10.0


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def csv_of(prefix: str, count: int) -> bytes:
    """A CSV of `count` distinct Mexican numbers (`prefix` + 8 digits) with references."""
    out = io.StringIO()
    out.write("phone_number,reference\r\n")
    for i in range(count):
        out.write(f"+{prefix}{i:08d},ref-{i}\r\n")
    return out.getvalue().encode()


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, MiB (0 once gone)."""
    total = 0
    for process in process_tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


class PeakRss:
    """Samples the RSS of some processes every 50 ms in a thread; the peak of each."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.peaks = dict.fromkeys(pids, 0.0)
        self._pids = pids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, pid in self._pids.items():
                self.peaks[name] = max(self.peaks[name], rss_mib(pid))
            self._stop.wait(0.05)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def server_cpu_s(name: str) -> float:
    """CPU seconds of every process called `name` (PostgreSQL's backends, redis-server)."""
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == name:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def cpu_snapshot(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each part of the stack: a steadier figure than items/s on a
    shared machine, and where the time of a CPU-bound run goes."""
    pids = {name: process.pid for name, process in stack.processes.items()}
    assert stack.sim.process is not None
    pids["simulator"] = stack.sim.process.pid
    snapshot = {name: cpu_s(pid) for name, pid in pids.items()}
    snapshot["postgres"] = server_cpu_s("postgres")
    snapshot["redis"] = server_cpu_s("redis-server")
    return snapshot


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- the stack (parts a, b, c) ---------------------------------------------------------------


class Stack:
    """The simulator (answers ready READY_AFTER_S after a submit, callbacks on), the API, a
    worker and the scheduler on a migrated scratch database; one client whose subscription
    takes its single checks' events (not its job items')."""

    def __init__(self, db_url: str, ceiling: float, receiver: Receiver, workers: int = 1) -> None:
        self._receiver_url = receiver.url
        redis.Redis.from_url(REDIS_URL).flushdb()
        script = f"ring-0-{READY_AFTER_S:g}s"
        self.sim = SimProcess(
            ["--api-id", API_ID, "--api-secret", API_SECRET, "--submit-script", script]
        )
        self.sim.start()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.http: httpx.Client | None = None
        try:
            self._start(db_url, ceiling, workers)
        except BaseException:
            # Whatever failed, nothing this started may outlive the bench.
            self.stop()
            raise

    def _start(self, db_url: str, ceiling: float, workers: int) -> None:
        self.db_url = db_url
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PHONEBRIDGE_")},
            "PHONEBRIDGE_DATABASE_URL": db_url,
            "PHONEBRIDGE_REDIS_URL": REDIS_URL,
            "PHONEBRIDGE_UPSTREAM_BASE_URL": self.sim.base_url,
            "PHONEBRIDGE_UPSTREAM_API_ID": API_ID,
            "PHONEBRIDGE_UPSTREAM_API_SECRET": API_SECRET,
            "PHONEBRIDGE_UPSTREAM_MAX_RPS": f"{ceiling:g}",
            "PHONEBRIDGE_PUBLIC_URL": self.api_url,
            "PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE": "true",
            "PHONEBRIDGE_SECRET_KEY": "bench-secret-key-for-webhook-secrets",
            "PHONEBRIDGE_LOG_LEVEL": "WARNING",
        }
        exe = phonebridge_executable()
        subprocess.run([exe, "migrate"], env=env, check=True, capture_output=True)
        commands = {"api": ["api", "--port", str(port)], "worker": ["worker"]}
        commands |= {f"worker-{n}": ["worker"] for n in range(2, workers + 1)}
        # Each worker's exporter: the slots it took on the ceiling's timeline (worker_slots).
        self.worker_metrics = {name: free_port() for name in commands if name != "api"}
        for name, args in {**commands, "scheduler": ["scheduler"]}.items():
            metrics = self.worker_metrics.get(name)
            own = {} if metrics is None else {"PHONEBRIDGE_WORKER_METRICS_PORT": str(metrics)}
            self.processes[name] = subprocess.Popen([exe, *args], env={**env, **own})
        self._connect(exe, env)

    def _connect(self, exe: str, env: dict[str, str]) -> None:
        """A client and its key, the API ready, the receiver subscribed."""
        key = subprocess.run(
            [exe, "api-key", "create", "--name", "bench-jobs"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        self.http = httpx.Client(
            base_url=self.api_url, headers={"authorization": f"Bearer {key}"}, timeout=60
        )
        deadline = time.time() + 60
        while True:
            try:
                if self.api.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.2)
        subscription = {"url": self._receiver_url, "include_job_items": False}
        answer = self.api.post("/v1/subscriptions", json=subscription)
        if answer.status_code != 201:
            status = answer.status_code
            raise SystemExit(f"POST /v1/subscriptions answered {status}: {answer.text}")

    def worker_slots(self) -> tuple[float, float]:
        """The workers' counts so far of the slots they took on the ceiling's timeline and of
        their calls redone after missing their slot at the wire (their exporters)."""
        slots = late = 0.0
        for port in self.worker_metrics.values():
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            for line in text.splitlines():
                name, _, value = line.partition(" ")
                if name == "phonebridge_upstream_call_slots_total":
                    slots += float(value)
                elif name == "phonebridge_upstream_calls_late_at_wire_total":
                    late += float(value)
        return slots, late

    def create_job(self, body: bytes) -> tuple[dict[str, Any], float]:
        """A CSV job, started; the job and how long the create took to answer."""
        started = time.perf_counter()
        answer = self.api.post("/v1/check-jobs", content=body, headers={"content-type": "text/csv"})
        took = time.perf_counter() - started
        if answer.status_code != 201:
            raise SystemExit(f"POST /v1/check-jobs answered {answer.status_code}: {answer.text}")
        job: dict[str, Any] = answer.json()
        return job, took

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.api.get(f"/v1/check-jobs/{job_id}")
        answer.raise_for_status()
        job: dict[str, Any] = answer.json()
        return job

    def wait_for_job(
        self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> dict[str, Any]:
        deadline = time.time() + timeout_s
        while True:
            job = self.job(job_id)
            if until(job):
                return job
            if time.time() > deadline:
                raise SystemExit(f"job {job_id} did not get there in time: {job}")
            time.sleep(POLL_S)

    @property
    def api(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.sim.stop()


def submit_single_checks(stack: Stack, count: int, spread_s: float) -> tuple[dict[str, float], int]:
    """(b): `count` POST /v1/checks spread over `spread_s`; each 201 check's ready time
    (the simulator's submit time + READY_AFTER_S), and how many answered 503."""
    ready: dict[str, float] = {}
    unavailable = 0
    others: dict[int, int] = {}
    for i in range(count):
        answer = stack.api.post(
            "/v1/checks",
            json={"phone_number": f"+{CHECK_PREFIX}{i:08d}"},
            headers={"idempotency-key": f"bench-jobs-{i}"},
        )
        if answer.status_code == 201:
            task_id = answer.json()["task_id"]
            ready[task_id] = stack.sim.control.task(task_id)["submitted_at"] + READY_AFTER_S
        elif answer.status_code == 503:
            unavailable += 1
        else:
            others[answer.status_code] = others.get(answer.status_code, 0) + 1
        time.sleep(spread_s / count)
    if others:
        print(f"  single checks answered otherwise: {others}")
    return ready, unavailable


def submit_row_writes(stack: Stack) -> int:
    """Rows of scheduled_submits updated so far, from PostgreSQL's statistics: each backend
    publishes its counts within about a second of its last transaction, hence the wait."""
    time.sleep(1.5)
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'scheduled_submits'"
        ).fetchone()
    return int(row[0]) if row else 0


def calls_of_single_checks(stack: Stack, ready: dict[str, float]) -> int:
    polls = sum(len(stack.sim.control.calls(task_id=t, endpoint="task_result")) for t in ready)
    return polls + len(ready)


def print_ceiling(sim: dict[str, Any], wire: WireCalls, since: float, until: float) -> None:
    """The busiest second of the whole run twice: by the simulator's stamps (when its handler ran)
    and by the kernel's (when each request left its sender, bench/wire.py); over the ceiling by
    the first alone is the simulator read late, by the second a call really sent too soon."""
    line = f"  busiest second of the run: {sim['max_calls_in_window']} by the simulator's stamps"
    if wire.unavailable:
        print(f"{line}; not counted at the wire: {wire.unavailable}")
        return
    sent = wire.between(since, until)
    busiest, _ = busiest_window(sent, 1.0)
    print(
        f"{line}, {busiest} at the wire ({len(sent):,} requests there against the simulator's "
        f"{sim['calls']:,}" + (f"; {wire.dropped} frames dropped" if wire.dropped else "") + ")"
    )


def part_throughput(stack: Stack, receiver: Receiver, args: argparse.Namespace) -> None:
    """(a) and (b)."""
    print(f"(a) a {args.items:,}-item job at a ceiling of {args.ceiling:g} calls/s", flush=True)
    since = time.time()
    body = csv_of(JOB_PREFIX, args.items)
    cpu_before = cpu_snapshot(stack)
    writes_before = submit_row_writes(stack)
    slots_before, late_before = stack.worker_slots()
    with WireCalls(urlsplit(stack.sim.base_url).port or 80) as wire:
        job, _ = stack.create_job(body)
        job_id = job["id"]
        stack.wait_for_job(job_id, lambda j: j["counts"]["submitted"] > 0, 120)
        ready: dict[str, float] = {}
        unavailable = 0
        if args.checks:
            ready, unavailable = submit_single_checks(stack, args.checks, spread_s=10.0)
        job = stack.wait_for_job(job_id, lambda j: j["state"] == "completed", JOB_TIMEOUT_S)
        until = time.time()
    cpu_after = cpu_snapshot(stack)
    writes = submit_row_writes(stack) - writes_before
    slots_after, late_after = stack.worker_slots()
    counts = job["counts"]
    started, finished = parse_time(job["started_at"]), parse_time(job["finished_at"])
    run_s = finished - started
    whole = stack.sim.control.stats(since=since, until=until)
    calls = int(whole["calls"])
    job_calls = calls - calls_of_single_checks(stack, ready)
    per_item = job_calls / counts["to_submit"]
    rate = counts["to_submit"] / run_s
    goal = 0.9 * args.ceiling / per_item
    verdict = "meets" if rate >= goal else "MISSES"
    print(
        f"  {counts['to_submit']:,} items in {run_s:.1f} s: {rate:.1f} items/s; "
        f"upstream calls per item {per_item:.2f}; goal 0.9 x {args.ceiling:g} / {per_item:.2f} "
        f"= {goal:.1f} items/s: {verdict} it"
    )
    if run_s > 3 * STEADY_EDGE_S:
        # Where the time went: calls/s away from the ramp and the last answers' tail, against
        # the ceiling. A full timeline there and a rate short of the goal is ramp and tail; a
        # timeline short of the ceiling is the pipeline not keeping up.
        middle = stack.sim.control.stats(
            since=started + STEADY_EDGE_S, until=finished - STEADY_EDGE_S
        )
        steady = middle["calls"] / (run_s - 2 * STEADY_EDGE_S)
        print(
            f"  upstream calls/s {STEADY_EDGE_S:g} s away from the job's start and end: "
            f"{steady:.1f} ({steady / args.ceiling:.1%} of the ceiling, "
            f"{steady / (SAFETY_FACTOR * args.ceiling):.1%} of its timeline); busiest second "
            f"{middle['max_calls_in_window']}"
        )
    print_ceiling(whole, wire, since, until)
    # The workers' slots less their calls: slots left unused by calls started too late for them.
    slots = slots_after - slots_before
    unused = slots - (calls - len(ready))
    print(
        f"  the workers took {slots:,.0f} slots of the ceiling's timeline (run at "
        f"{SAFETY_FACTOR:g} x the ceiling): {unused:,.0f} ({unused / max(slots, 1):.1%}) left "
        f"unused by calls started too late for them; {late_after - late_before:,.0f} calls "
        "redone after missing their slot at the wire"
    )
    used = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
    per_item_ms = {name: 1000 * used[name] / counts["to_submit"] for name in used}
    total_ms = sum(per_item_ms.values())
    cores = os.cpu_count() or 1
    print(
        f"  CPU per item {total_ms:.2f} ms ("
        + ", ".join(
            f"{name} {ms:.2f}" for name, ms in sorted(per_item_ms.items(), key=lambda kv: -kv[1])
        )
        + f"); {cores} cores at that cost: {1000 * cores / total_ms:.0f} items/s"
    )
    # A claim, the mark and the answer: 3 a submitted item; more is a claim that ran out unsent
    # (or a hand-back: a slot missed, upstream paused).
    print(f"  scheduled_submits row updates per item {writes / counts['to_submit']:.2f}")
    print(
        f"  by verdict: {counts['by_verdict']}; failed {counts['failed']}, "
        f"expired {counts['expired']}"
    )
    if not args.checks:
        return
    deadline = max(ready.values(), default=time.time()) + 60
    while time.time() < deadline and any(t not in receiver.received for t in ready):
        time.sleep(0.2)
    lags = [receiver.received[t] - at for t, at in ready.items() if t in receiver.received]
    missing = len(ready) - len(lags)
    print(
        f"(b) {args.checks} single checks during the job: {len(ready)} answered 201, "
        f"{unavailable} answered 503; ready -> webhook p50 {statistics.median(lags):.2f} s, "
        f"p95 {percentile(lags, 0.95):.2f} s, max {max(lags):.2f} s"
        + (f"; {missing} webhooks missing" if missing else "")
        if lags
        else f"(b) no webhook arrived ({len(ready)} answered 201, {unavailable} answered 503)"
    )


def part_memory(stack: Stack, args: argparse.Namespace) -> None:
    """(c)."""
    print(f"(c) creating a {args.memory_items:,}-item CSV job", flush=True)
    body = csv_of(MEMORY_PREFIX, args.memory_items)
    api_pid = stack.processes["api"].pid
    before = rss_mib(api_pid)
    peaks = PeakRss({name: p.pid for name, p in stack.processes.items()})
    job, took = stack.create_job(body)
    api_peak = peaks.peaks["api"]
    time.sleep(args.watch_s)
    found = peaks.stop()
    stack.api.post(f"/v1/check-jobs/{job['id']}/cancel").raise_for_status()
    print(
        f"  body {len(body) / 2**20:.1f} MiB answered in {took:.2f} s (goal < 10 s); "
        f"API RSS {before:.0f} MiB before, peak {api_peak:.0f} MiB during the create: "
        f"+{api_peak - before:.0f} MiB (goal < 100 MiB)"
    )
    print(
        f"  over the create and {args.watch_s:g} s of running: peak RSS worker "
        f"{found['worker']:.0f} MiB, scheduler {found['scheduler']:.0f} MiB, "
        f"api {found['api']:.0f} MiB; {stack.job(job['id'])['counts']['submitted']:,} submitted"
    )


# --- part d: PostgreSQL ----------------------------------------------------------------------


def insert_queued_items(url: str, count: int) -> None:
    """`count` items of running jobs, each waiting to be submitted: a `check_job_items` row as
    the API writes one (mask, keyed digest, a reference) and a `scheduled_submits` row holding
    its sealed number (41 bytes: version, nonce, the 12 digits sealed, the tag), all due now.
    Ten clients with one job each; one has 90% of the items, as in bench/scale.py."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO clients (name) SELECT 'jobs-' || g FROM generate_series(1, %(n)s) AS g",
            {"n": CLIENTS},
        )
        conn.execute(
            """
            INSERT INTO check_jobs (public_id, client_id, state, items, rejected, duplicates,
                                    cached, created_at, updated_at, started_at)
            SELECT 'job_bench' || c.id, c.id, 'running', 0, 0, 0, 0, now(), now(), now()
            FROM clients AS c
            """
        )
        # Item g belongs to client 1 unless g is a multiple of 10 (then one of the nine others).
        owner = "CASE WHEN g %% 10 = 0 THEN 2 + (g / 10) %% 9 ELSE 1 END"
        conn.execute(
            f"""
            INSERT INTO check_job_items (job_pk, line, state, reference, phone_number_masked,
                                         number_digest)
            SELECT j.id, g, 'waiting', 'ref-' || g, '52******' || lpad((g %% 10000)::text, 4, '0'),
                   decode(md5(g::text) || md5((-g)::text), 'hex')
            FROM generate_series(1, %(n)s) AS g JOIN check_jobs AS j ON j.client_id = {owner}
            """,  # noqa: S608 - no input, a constant expression
            {"n": count},
        )
        conn.execute(
            f"""
            INSERT INTO scheduled_submits (client_id, purpose, state, phone_number_sealed,
                                           due_at, created_at, updated_at, job_pk, job_line)
            SELECT j.client_id, 'job_item', 'waiting',
                   decode('01' || md5(g::text) || md5((g + 1)::text) || '0102030405060708',
                          'hex'),
                   now(), now(), now(), j.id, g
            FROM generate_series(1, %(n)s) AS g JOIN check_jobs AS j ON j.client_id = {owner}
            """,  # noqa: S608 - no input, a constant expression
            {"n": count},
        )
        conn.execute("VACUUM ANALYZE check_job_items")
        conn.execute("VACUUM ANALYZE scheduled_submits")


def relation_bytes(url: str, table: str) -> tuple[int, int]:
    """A table's heap (with TOAST) and its indexes, bytes."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_table_size(%(t)s), pg_indexes_size(%(t)s)", {"t": table}
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def time_claims(url: str, claim: int) -> float:
    from service.config import build_settings
    from service.store.db import create_engine_for, session_factory
    from service.store.scheduled_submits import claim_due_submits

    settings = build_settings(database_url=url, redis_url=REDIS_URL)
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=2)
    sessions = session_factory(engine)
    rounds = []
    for _ in range(7):
        now = datetime.now(UTC)
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            _, ids = await claim_due_submits(session, now, 60, claim)
            rounds.append(time.perf_counter() - started)
            if len(ids) != min(claim, count_waiting(url)):
                raise SystemExit(f"claimed {len(ids)} of {claim}")
            await session.rollback()  # the same round again, not an emptier one
    await engine.dispose()
    return statistics.median(rounds)


def count_waiting(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM scheduled_submits WHERE state = 'waiting'")
        found = row.fetchone()
    return int(found[0]) if found else 0


def part_database(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.queued.split(",")]
    print(f"(d) PostgreSQL: {', '.join(f'{s:,}' for s in sizes)} queued items", flush=True)
    rows: dict[int, dict[str, float]] = {}
    for size in sizes:
        with scratch_database("phonebridge_bench_jobs", migrated=True) as database:
            insert_queued_items(database.url, size)
            items_heap, items_index = relation_bytes(database.url, "check_job_items")
            submits_heap, submits_index = relation_bytes(database.url, "scheduled_submits")
            claim_s = asyncio.run(time_claims(database.url, args.claim))
        rows[size] = {
            "check_job_items row (B/item)": items_heap / size,
            "check_job_items indexes (B/item)": items_index / size,
            "scheduled_submits row (B/item)": submits_heap / size,
            "scheduled_submits indexes (B/item)": submits_index / size,
            "total (B/item)": (items_heap + items_index + submits_heap + submits_index) / size,
            f"claim of {args.claim} (ms)": claim_s * 1000,
        }
    header = "".join(f"{size:>14,}" for size in sizes)
    print(f"  {'queued items':36}{header}")
    for key in rows[sizes[0]]:
        print(f"  {key:36}" + "".join(f"{rows[size][key]:>14.1f}" for size in sizes))


# --- part v: reading a finished job -----------------------------------------------------------

VIEW_READS = 15


def insert_finished_job(url: str, count: int) -> None:
    """One client's completed job of `count` items, each submitted with its own completed task
    (a `ring` answer), as a job leaves them once its last answer is written."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO clients (name) VALUES ('jobs-view')")
        conn.execute(
            """
            INSERT INTO check_jobs (public_id, client_id, state, items, rejected, duplicates,
                                    cached, created_at, updated_at, started_at, finished_at)
            SELECT 'job_view', id, 'completed', %(n)s, 0, 0, 0, now(), now(), now(), now()
            FROM clients
            """,
            {"n": count},
        )
        conn.execute(
            """
            INSERT INTO tasks (client_id, task_id, state, result, submitted_at, expires_at,
                               completed_at, job_pk, phone_number_masked)
            SELECT j.client_id, 'view-' || g, 'completed',
                   jsonb_build_object('phone_status', 'ring',
                                      'masked_phone_number', '52******' || lpad(g::text, 4, '0')),
                   now(), now() + interval '1 day', now(), j.id, '52******' || lpad(g::text, 4, '0')
            FROM generate_series(1, %(n)s) AS g CROSS JOIN check_jobs AS j
            """,
            {"n": count},
        )
        conn.execute(
            """
            INSERT INTO check_job_items (job_pk, line, state, phone_number_masked, number_digest,
                                         task_pk)
            SELECT t.job_pk, row_number() OVER (ORDER BY t.id), 'submitted',
                   t.phone_number_masked, decode(md5(t.task_id) || md5(t.task_id), 'hex'), t.id
            FROM tasks AS t
            """
        )
        conn.execute("VACUUM ANALYZE tasks")
        conn.execute("VACUUM ANALYZE check_job_items")


async def time_job_reads(sqlalchemy_url: str) -> dict[str, float]:
    """The median read of the job, counted again, kept when it finished, and as its client reads
    it while it runs (the count kept between reads, service/features/job_counts.py), in
    seconds."""
    from dataclasses import replace

    from redis.asyncio import Redis

    from service.clock import utc_now
    from service.features.check_jobs import JobPace, job_view
    from service.features.job_counts import KEY_PREFIX, KeptCounts
    from service.store.check_jobs import job_by_pk, keep_final_counts
    from service.store.db import create_engine_for, session_factory, transaction

    engine = create_engine_for(sqlalchemy_url)
    sessions = session_factory(engine)
    pace = JobPace(ceiling_per_s=200.0)
    redis_client: Redis[Any] = Redis.from_url(REDIS_URL)
    kept_counts = KeptCounts(redis_client)
    try:
        async with transaction(sessions) as session:
            job = await job_by_pk(session, 1)
            assert job is not None
            counted = await job_view(session, job, pace, utc_now())
            await keep_final_counts(session, job.id, counted.counts.progress_json())
        await redis_client.delete(f"{KEY_PREFIX}1")
        medians: dict[str, float] = {}
        for label in ("counted again", "kept", "running"):
            reads = []
            for _ in range(VIEW_READS):
                async with transaction(sessions) as session:
                    started = time.perf_counter()
                    job = await job_by_pk(session, 1)
                    assert job is not None
                    if label != "kept":
                        job = replace(job, final_counts=None)
                    kept = kept_counts if label == "running" else None
                    view = await job_view(session, job, pace, utc_now(), kept=kept)
                    reads.append(time.perf_counter() - started)
                if view.counts != counted.counts:
                    raise SystemExit(f"{label}: {view.counts} against {counted.counts}")
            medians[label] = statistics.median(reads)
        return medians
    finally:
        await redis_client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
        await engine.dispose()


def part_view(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.view_items.split(",")]
    print(f"(v) reading a finished job of {', '.join(f'{s:,}' for s in sizes)} items", flush=True)
    for size in sizes:
        with scratch_database("phonebridge_bench_jobs", migrated=True) as database:
            insert_finished_job(database.url, size)
            medians = asyncio.run(time_job_reads(database.sqlalchemy_url))
        again, kept, running = medians["counted again"], medians["kept"], medians["running"]
        print(
            f"  {size:>9,} items: counted again {again * 1000:.1f} ms, kept {kept * 1000:.1f} ms "
            f"a read (x{again / kept:.0f}); running, as its client reads it (counted once, then "
            f"the count kept {shown_for_s(again):.1f} s): {running * 1000:.1f} ms"
        )


# --- part s: the simulator alone -------------------------------------------------------------


def serve_callback_receiver() -> None:
    """A receiver of upstream's callbacks (GETs) in a process of its own, so that neither it
    nor the submitting loop slows the other: counts arrivals, answers at once. Prints its port;
    `GET /_stats` says how many arrived. Serves until killed."""
    from aiohttp import web

    arrived = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        return web.json_response({"status": "OK"})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"arrived": arrived})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/hook", hook)
        app.router.add_get("/_stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(serve())


@contextmanager
def callback_receiver() -> Iterator[tuple[str, Callable[[], int]]]:
    """The receiver's process: its hook URL and a function that counts its arrivals."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-callback-receiver"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        base = f"http://127.0.0.1:{int(process.stdout.readline())}"

        def arrived() -> int:
            return int(httpx.get(f"{base}/_stats").json()["arrived"])

        yield f"{base}/hook", arrived
    finally:
        process.kill()
        process.wait()


async def submit_paced(base_url: str, callback: str, count: int, rate: float) -> float:
    """`count` submits at `rate` a second (each one started on time, however long the ones
    before take to be answered); how far behind its schedule a submit started, at worst.
    aiohttp: httpx's async client spends about 15 ms of CPU a request here, more than the
    simulator's whole submit (about 4 ms with its callback)."""
    import aiohttp

    headers = {"X-DF-API-ID": API_ID, "X-DF-API-SECRET": API_SECRET}
    behind = 0.0
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        base_url, headers=headers, connector=connector, timeout=timeout
    ) as upstream:

        async def submit(i: int) -> None:
            body = {"phone_number": f"{JOB_PREFIX}{i:08d}", "callback": callback}
            async with upstream.post("/check/phone_number/o1", json=body) as answer:
                payload = await answer.json(content_type=None)
                if answer.status != 200 or payload.get("status") != "OK":
                    raise SystemExit(f"submit {i} answered {answer.status}: {payload}")

        loop = asyncio.get_running_loop()
        started = loop.time()
        pending: set[asyncio.Task[None]] = set()
        for i in range(count):
            wait = started + i / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                behind = max(behind, -wait)
            task = loop.create_task(submit(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    return behind


def part_simulator(args: argparse.Namespace) -> None:
    count, rate = args.sim_submits, args.ceiling
    print(f"(s) the simulator: {count:,} submits at {rate:g}/s with callbacks", flush=True)
    script = f"ring-0-{READY_AFTER_S:g}s"
    with (
        SimProcess(
            ["--api-id", API_ID, "--api-secret", API_SECRET, "--submit-script", script]
        ) as sim,
        callback_receiver() as (url, arrived),
    ):
        assert sim.process is not None
        started = time.time()
        behind = asyncio.run(submit_paced(sim.base_url, url, count, rate))
        sent_s = time.time() - started
        deadline = time.time() + 60
        while arrived() < count and time.time() < deadline:
            time.sleep(0.2)
        log = sim.control.callback_log()
        counts = sim.control.callback_counts()
        lateness = [c["sent_at"] - c["at"] for c in log if c["sent_at"] is not None]
        errors = sum(1 for c in log if c["status"] != 200)
        rss = rss_mib(sim.process.pid)
        received = arrived()
    print(
        f"  {count:,} submits in {sent_s:.1f} s ({count / sent_s:.0f}/s; a submit started "
        f"{behind:.2f} s behind its schedule at worst); {received:,} callbacks arrived, "
        f"{errors} failed or unanswered; sent late by p50 {statistics.median(lateness) * 1000:.0f}"
        f" ms, p95 {percentile(lateness, 0.95) * 1000:.0f} ms, max "
        f"{max(lateness) * 1000:.0f} ms; simulator RSS {rss:.0f} MiB"
        + (
            f" (failures and lateness of the newest {len(log):,} of {counts['planned']:,} "
            "callbacks: the simulator's log is bounded)"
            if counts["dropped"]
            else ""
        )
    )


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="abcdvs", help="which parts to run: a, b, c, d, v, s")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--checks", type=int, default=50)
    parser.add_argument("--memory-items", type=int, default=100_000)
    parser.add_argument("--watch-s", type=float, default=30.0)
    parser.add_argument("--queued", default="10000,1000000")
    parser.add_argument("--claim", type=int, default=500)
    parser.add_argument("--view-items", default="20000,100000")
    parser.add_argument("--sim-submits", type=int, default=20_000)
    parser.add_argument("--ceiling", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (a, b, c)")
    parser.add_argument("--quick", action="store_true", help="every size a tenth or less")
    parser.add_argument("--serve-callback-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_callback_receiver:
        serve_callback_receiver()
        return
    if args.quick:
        args.items, args.memory_items, args.sim_submits = 2_000, 10_000, 2_000
        args.queued, args.watch_s = "10000,100000", 10.0
        args.view_items = "2000,10000"
    parts = set(args.parts)
    if "b" in parts and "a" not in parts:
        parser.error("(b) runs during (a)'s job: --parts ab")
    if "a" in parts and "b" not in parts:
        args.checks = 0
    print(f"load average before: {load_average()}", flush=True)
    if "s" in parts:
        part_simulator(args)
    if "d" in parts:
        part_database(args)
    if "v" in parts:
        part_view(args)
    if parts & {"a", "c"}:
        receiver = Receiver()
        with scratch_database("phonebridge_bench_jobs") as database:
            stack = Stack(database.url, args.ceiling, receiver, args.workers)
            try:
                if "a" in parts:
                    part_throughput(stack, receiver, args)
                if "c" in parts:
                    part_memory(stack, args)
            finally:
                stack.stop()
                receiver.stop()
    print(f"load average after: {load_average()}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
