"""The poll schedule: `backoff` vs `adaptive`, side by side, and fair claims under saturation.

Runs the engine's own code on a virtual clock against a real PostgreSQL: each tick (0.25 s, as
the scheduler) claims due tasks with the claim statement (as many as the rate ceiling allows),
reads them leased, decides each answer with the domain's `decide_after_poll` on the estimate read
from the store, and writes the batch back with the write-back and the estimate update, exactly as
a worker does. Only upstream is simulated: a task's answer is ready a drawn time after its
`submitted_at`. Virtual time makes hours of schedule a minute of CPU and the figures independent of
the machine's load (printed anyway).

1. The front: detection lag (OK poll - answer ready) p50/p95/max and upstream calls per task of
   `backoff` at several PHONEBRIDGE_POLL_INITIAL_S / _MAX_S and of `adaptive` over a range of
   call budgets (PHONEBRIDGE_POLL_CALLS_PER_TASK) and p95 lag targets
   (PHONEBRIDGE_POLL_TARGET_P95_S), on a lognormal mix (median 15 s, sigma 0.7) and a bimodal one
   (70% around 5 s, 30% around 60 s), each measured on tasks registered after a warm-up that lets
   the estimate form. Prints the defaults side by side (adaptive over backoff) and the schedule
   each mix learnt, and draws the front as an SVG (--plot, shown in README).
2. The safety net of checks with callbacks, on the lognormal mix's learnt estimate: for nets of
   several budgets, the calls of a check whose callback arrives and the lag of one whose callback
   is lost, beside the same checks polled without a callback (pure: the domain's delays, sampled
   answers, no database).
3. A callback outage: checks with callbacks whose path breaks for a while and heals, the
   domain's net, schedule and callback record deciding every poll (pure, virtual clock): the
   calls of checks whose callback arrives and the lag of those lost, beside the same checks
   polled without a callback; with the outage rule, with a fixed wait, and the loss share alone.
   The net part also prints, beside each net, the lower bound on a lost callback's p95 that any
   net of the same cost obeys (service/domain/safety_net_bound.py).
4. Saturation: two clients, 5,000 and 50 tasks due (answers ready), a ceiling of 20 calls/s; the
   small client's p95 lag with the fair claim vs main's oldest-due-first claim, and the time the
   big client's backlog takes.

    .venv/bin/python bench/schedule.py [--tasks 1000] [--warmup 400] [--rate 5] [--big 5000]
        [--parts front,net,outage,saturation] [--plot docs/schedule-front.svg]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from poll import percentile
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support import scratch_database

from service.config import build_settings
from service.domain.answers import Outcome, OutcomeKind, PhoneResult
from service.domain.backoff import next_poll_delay
from service.domain.callback_trust import HALF_LIFE_S as CALLBACK_HALF_LIFE_S
from service.domain.callback_trust import LATE_CALLBACK_GRACE_S, CallbackRecord
from service.domain.completion import EDGES, CompletionEstimate, apportion
from service.domain.polling import DecisionKind, PollPolicy, TaskSnapshot, decide_after_poll
from service.domain.safety_net_bound import min_extra_calls, min_lost_lag_p95
from service.domain.schedule import (
    DEFAULT_CALLS_PER_TASK,
    PollSchedule,
    adaptive_delay,
    adaptive_next_age,
    next_delay,
    safety_net_delay,
    target_probability,
)
from service.engine.account_estimate import completion_increments
from service.store.db import create_engine_for, session_factory, transaction
from service.store.estimates import add_to_estimates, load_estimate
from service.store.leased_tasks import load_leased_tasks
from service.store.leases import claim_due
from service.store.poll_claims import claim_due_tasks
from service.store.poll_results import PollWrite, record_poll_results

TICK_S = 0.25
LEASE_S = 60.0
ACCOUNT = "bench-account"
COMPLETED = Outcome(OutcomeKind.COMPLETED, "OK", "ok", result=PhoneResult("52******", "ring"))
PENDING = Outcome(OutcomeKind.PENDING, "PENDING", "in progress")

# main's claim, for the saturation comparison: the oldest due rows first, whoever owns them.
OLDEST_DUE_FIRST = text(
    """
    UPDATE tasks SET lease_token = :token, lease_until = :lease_until
    WHERE id IN (
        SELECT id FROM tasks
        WHERE state = 'pending' AND next_poll_at <= :now AND expires_at > :now
          AND (lease_until IS NULL OR lease_until < :now)
        ORDER BY next_poll_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)


def lognormal(rng: random.Random) -> float:
    return rng.lognormvariate(math.log(15.0), 0.7)


def lognormal_cdf(age_s: float) -> float:
    """The lognormal mix's true CDF (what the bound on a safety net is computed on)."""
    if age_s <= 0:
        return 0.0
    return 0.5 * (1.0 + math.erf((math.log(age_s) - math.log(15.0)) / (0.7 * math.sqrt(2.0))))


# Past this age the lognormal mix leaves 1e-4 of its answers (the bound counts them found).
LOGNORMAL_HORIZON_S = 15.0 * math.exp(0.7 * 3.72)


def bimodal(rng: random.Random) -> float:
    if rng.random() < 0.7:
        return rng.lognormvariate(math.log(5.0), 0.25)
    return rng.lognormvariate(math.log(60.0), 0.15)


MIXES: dict[str, Callable[[random.Random], float]] = {
    "lognormal (median 15 s, sigma 0.7)": lognormal,
    "bimodal (70% ~5 s, 30% ~60 s)": bimodal,
}


@dataclass
class Run:
    lags: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    learnt: CompletionEstimate | None = None


@dataclass(frozen=True)
class Setting:
    """One point of the front: a schedule and its knobs."""

    label: str
    schedule: PollSchedule
    initial_s: float = 2.0
    max_s: float = 300.0
    calls_per_task: float = DEFAULT_CALLS_PER_TASK
    target_p95_s: float | None = None
    default: bool = False


FRONT = (
    *(
        Setting(f"backoff {i:g}/{m:g} s", PollSchedule.BACKOFF, i, m, default=(i, m) == (2, 300))
        for i, m in ((1, 300), (2, 300), (4, 300), (8, 300), (2, 60))
    ),
    *(
        Setting(
            f"adaptive {c:g} calls",
            PollSchedule.ADAPTIVE,
            calls_per_task=c,
            default=c == DEFAULT_CALLS_PER_TASK,
        )
        for c in (2.25, 2.5, 3.0, 3.5, 4.0, 5.0)
    ),
    *(
        Setting(f"adaptive p95 <= {t:g} s", PollSchedule.ADAPTIVE, target_p95_s=t)
        for t in (6.0, 10.0, 15.0, 25.0)
    ),
)


DEFAULT_ADAPTIVE = next(
    setting for setting in FRONT if setting.default and setting.schedule is PollSchedule.ADAPTIVE
)


@dataclass(frozen=True)
class Point:
    setting: Setting
    calls: float
    p50: float
    p95: float
    worst: float

    @classmethod
    def of(cls, setting: Setting, run: Run) -> Point:
        return cls(
            setting,
            statistics.fmean(run.calls),
            percentile(run.lags, 0.5),
            percentile(run.lags, 0.95),
            max(run.lags),
        )


class World:
    """The database, the virtual clock, and upstream's truth: when each task's answer is ready."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], start: datetime) -> None:
        self.sessions = sessions
        self.now = start
        self.ready_at: dict[int, datetime] = {}
        self.submitted_at: dict[int, datetime] = {}
        self.client_of: dict[int, int] = {}
        self.measured: set[int] = set()

    async def client(self, name: str) -> int:
        async with transaction(self.sessions) as session:
            result = await session.execute(
                text("INSERT INTO clients (name) VALUES (:n) RETURNING id"), {"n": name}
            )
            return int(result.scalar_one())

    async def register(
        self, client: int, answers_after_s: list[float], *, measured: bool, due_in_s: float = 0.0
    ) -> list[int]:
        """Tasks submitted now, first poll due at once (as POST /v1/tasks leaves them)."""
        now = self.now
        due = now + timedelta(seconds=due_in_s)
        async with transaction(self.sessions) as session:
            result = await session.execute(
                text(
                    """
                    INSERT INTO tasks (client_id, task_id, state, submitted_at, registered_at,
                                       expires_at, next_poll_at, poll_count, updated_at)
                    SELECT :client, 'bench-' || gen_random_uuid(), 'pending', :now, :now,
                           :expires, :due, 0, :now
                    FROM generate_series(1, :n)
                    RETURNING id
                    """
                ),
                {
                    "client": client,
                    "now": now,
                    "expires": now + timedelta(days=1),
                    "due": due,
                    "n": len(answers_after_s),
                },
            )
            ids = sorted(int(row[0]) for row in result)
        for task_pk, after_s in zip(ids, answers_after_s, strict=True):
            self.ready_at[task_pk] = now + timedelta(seconds=after_s)
            self.submitted_at[task_pk] = now
            self.client_of[task_pk] = client
            if measured:
                self.measured.add(task_pk)
        return ids

    async def next_due(self) -> datetime | None:
        """When the earliest pending task is due (None: none is pending)."""
        async with self.sessions() as session:
            result = await session.execute(
                text("SELECT min(next_poll_at) FROM tasks WHERE state = 'pending'")
            )
            due: datetime | None = result.scalar_one()
            return due

    async def skip_idle_ticks(self) -> None:
        """Move the clock to the tick at which the next task is due, past the ticks that would
        claim nothing (the same polls at the same instants, in a fraction of the queries)."""
        due = await self.next_due()
        if due is not None and due > self.now:
            ticks = math.ceil((due - self.now).total_seconds() / TICK_S)
            self.now += timedelta(seconds=TICK_S * ticks)

    async def tick(
        self, policy: PollPolicy, limit: int, rng: random.Random, run: Run, *, fair: bool = True
    ) -> list[int]:
        """One scheduler round and the worker's batch; returns the tasks completed."""
        now = self.now
        async with transaction(self.sessions) as session:
            if fair:
                token, ids = await claim_due_tasks(session, now, LEASE_S, limit)
            else:
                token, ids = await claim_due(session, OLDEST_DUE_FIRST, now, LEASE_S, limit)
        if not ids:
            return []
        async with transaction(self.sessions) as session:
            leased = await load_leased_tasks(session, ids, token, now)
            stored = await load_estimate(session, ACCOUNT)
        estimate = None if stored is None else stored.as_of(now, 3600.0)
        writes = []
        for task in leased:
            outcome = COMPLETED if self.ready_at[task.id] <= now else PENDING
            snapshot = TaskSnapshot(
                task.poll_count,
                task.expires_at,
                submitted_at=task.submitted_at,
                last_pending_at=task.last_pending_at,
            )
            writes.append(
                PollWrite(
                    task.id,
                    decide_after_poll(snapshot, outcome, now, policy, rng.random(), estimate),
                )
            )
        async with transaction(self.sessions) as session:
            written = await record_poll_results(session, token, writes, now)
            await add_to_estimates(
                session, ACCOUNT, completion_increments(estimate, writes, written), now, 3600.0
            )
        done = []
        for write in writes:
            if write.decision.kind is DecisionKind.COMPLETE:
                done.append(write.id)
                if write.id in self.measured:
                    run.lags.append((now - self.ready_at[write.id]).total_seconds())
                    run.calls.append(write.decision.poll_count)
        run.learnt = estimate
        return done


def bench_engine(url: str) -> AsyncEngine:
    """The engine's own pool on the scratch database, without waiting for each commit's WAL
    flush: the figures are virtual time, and a shared machine's fsyncs only make them slow."""
    engine = create_engine_for(
        url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _no_commit_wait(connection: Any, _record: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
        connection.commit()

    return engine


def policy_for(setting: Setting) -> PollPolicy:
    settings = build_settings(
        poll_schedule=setting.schedule,
        poll_initial_s=setting.initial_s,
        poll_max_s=setting.max_s,
        poll_calls_per_task=setting.calls_per_task,
        poll_target_p95_s=setting.target_p95_s,
    )
    return PollPolicy(settings.poll_backoff, schedule=settings.schedule_policy)


async def run_mix(
    url: str,
    draw: Callable[[random.Random], float],
    setting: Setting,
    args: argparse.Namespace,
) -> Run:
    """Warm-up tasks until all are done (the estimate forms), then the measured ones; both arrive
    at `args.rate` per second."""
    engine = bench_engine(url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("TRUNCATE tasks, completion_estimates CASCADE"))
    world = World(sessions, datetime.now(UTC))
    rng, draws = random.Random(7), random.Random(11)
    policy = policy_for(setting)
    client = await world.client("bench")
    run = Run()
    limit = 10_000  # no saturation here: the ceiling is far above the calls these rates need
    for count, measured in ((args.warmup, False), (args.tasks, True)):
        arrived, pending, carry = 0, 0, 0.0
        while arrived < count or pending > 0:
            carry += args.rate * TICK_S
            batch = min(int(carry), count - arrived)
            carry -= batch
            if batch:
                await world.register(client, [draw(draws) for _ in range(batch)], measured=measured)
                arrived += batch
                pending += batch
            pending -= len(await world.tick(policy, limit, rng, run))
            world.now += timedelta(seconds=TICK_S)
            if arrived == count:
                await world.skip_idle_ticks()
    await engine.dispose()
    return run


@dataclass(order=True)
class SimTask:
    next_poll_at: datetime
    key: int
    submitted_at: datetime = field(compare=False)
    ready_at: datetime = field(compare=False)
    measured: bool = field(compare=False)
    poll_count: int = field(default=0, compare=False)
    last_pending_at: datetime | None = field(default=None, compare=False)


def simulate(
    draw: Callable[[random.Random], float], setting: Setting, args: argparse.Namespace
) -> Run:
    """`run_mix` in memory: the same arrivals, ticks, draws, domain decisions and estimate
    updates (decayed, spread by the estimate the batch was scheduled with), without the SQL
    between them. With no ceiling to saturate, every due task is polled at its tick, as the
    claim does; `front` shows both agree where both run."""
    start = datetime(2026, 12, 1, tzinfo=UTC)
    now, policy = start, policy_for(setting)
    rng, draws = random.Random(7), random.Random(11)
    stored, stored_at = CompletionEstimate.empty(), start
    due: list[SimTask] = []
    run, keys = Run(), itertools.count()
    for count, measured in ((args.warmup, False), (args.tasks, True)):
        arrived, pending, carry = 0, 0, 0.0
        while arrived < count or pending > 0:
            carry += args.rate * TICK_S
            batch = min(int(carry), count - arrived)
            carry -= batch
            for _ in range(batch):
                ready_at = now + timedelta(seconds=draw(draws))
                heapq.heappush(due, SimTask(now, next(keys), now, ready_at, measured))
            arrived += batch
            pending += batch
            estimate = (
                stored.decayed((now - stored_at).total_seconds(), 3600.0)
                if stored.total > 0
                else None
            )
            observations = []
            while due and due[0].next_poll_at <= now:
                task = heapq.heappop(due)
                outcome = COMPLETED if task.ready_at <= now else PENDING
                snapshot = TaskSnapshot(
                    task.poll_count,
                    task.submitted_at + timedelta(days=1),
                    submitted_at=task.submitted_at,
                    last_pending_at=task.last_pending_at,
                )
                decision = decide_after_poll(snapshot, outcome, now, policy, rng.random(), estimate)
                if decision.observation is not None:
                    observations.append(decision.observation)
                if decision.kind is DecisionKind.COMPLETE:
                    pending -= 1
                    if task.measured:
                        run.lags.append((now - task.ready_at).total_seconds())
                        run.calls.append(decision.poll_count)
                    continue
                assert decision.next_poll_at is not None
                task.poll_count = decision.poll_count
                task.last_pending_at = decision.last_pending_at or task.last_pending_at
                task.next_poll_at = decision.next_poll_at
                heapq.heappush(due, task)
            if observations:
                base = estimate or CompletionEstimate.empty()
                stored, stored_at = base.plus(apportion(base, observations)), now
            run.learnt = estimate
            now += timedelta(seconds=TICK_S)
            if arrived == count and due and due[0].next_poll_at > now:
                ticks = math.ceil((due[0].next_poll_at - now).total_seconds() / TICK_S)
                now += timedelta(seconds=TICK_S * ticks)
    return run


async def saturation(url: str, fair: bool, args: argparse.Namespace) -> tuple[list[float], float]:
    """The small client's lags, and the seconds until the big client's last task completed."""
    engine = bench_engine(url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("TRUNCATE tasks, completion_estimates CASCADE"))
    start = datetime.now(UTC)
    world = World(sessions, start)
    big, small = await world.client("big"), await world.client("small")
    # The big backlog became due a little earlier: main's order serves all of it first.
    big_ids = set(await world.register(big, [0.0] * args.big, measured=False))
    world.now += timedelta(seconds=1)
    small_ids = set(await world.register(small, [0.0] * 50, measured=True))
    run, rng = Run(), random.Random(3)
    policy = policy_for(DEFAULT_ADAPTIVE)
    per_tick = args.ceiling * TICK_S
    carry = 0.0
    left = big_ids | small_ids
    big_done_at = start
    while left:
        carry += per_tick
        limit, carry = int(carry), carry - int(carry)
        done = await world.tick(policy, limit, rng, run, fair=fair)
        left -= set(done)
        if big_ids & set(done):
            big_done_at = world.now
        world.now += timedelta(seconds=TICK_S)
    await engine.dispose()
    return run.lags, (big_done_at - start).total_seconds()


def learnt_schedule(estimate: CompletionEstimate | None, target_p: float) -> str:
    if estimate is None or estimate.total <= 0:
        return "nothing learnt"
    quantiles = ", ".join(
        f"p{round(q * 100)} {estimate.quantile(q):.1f} s" for q in (0.5, 0.9, 0.95, 0.99)
    )
    ages, age = [0.0], 0.0
    for _ in range(6):
        age = max(age + 2.0, min(adaptive_next_age(estimate, age, target_p), age + 300.0))
        ages.append(age)
    polls = ", ".join(f"{a:.1f}" for a in ages)
    return f"learnt {quantiles} ({estimate.total:.0f} completions); polls at ages {polls} s"


def front(url: str, args: argparse.Namespace) -> dict[str, list[Point]]:
    """Every setting of FRONT on both mixes, in memory; the defaults also through PostgreSQL
    (`run_mix`, marked "db"), which must agree. Prints a line per run as it ends."""
    print(
        f"\n{'mix':12}{'schedule':28}{'calls/task':>11}{'lag p50 s':>11}{'lag p95 s':>11}"
        f"{'max s':>9}"
    )
    points: dict[str, list[Point]] = {}
    for mix, draw in MIXES.items():
        short = mix.split()[0]
        for setting in FRONT:
            run = simulate(draw, setting, args)
            point = Point.of(setting, run)
            points.setdefault(mix, []).append(point)
            mark = " (default)" if setting.default else ""
            print_point(short, setting.label + mark, point)
            if setting.default and args.db:
                in_db = Point.of(setting, asyncio.run(run_mix(url, draw, setting, args)))
                print_point(short, setting.label + " (db)", in_db)
            if setting.default and setting.schedule is PollSchedule.ADAPTIVE:
                target_p = target_probability(setting.calls_per_task)
                print(f"    {learnt_schedule(run.learnt, target_p)}")
                LEARNT[mix] = run.learnt
    for mix, mix_points in points.items():
        backoff, adaptive = (p for p in mix_points if p.setting.default)
        print(
            f"{mix}: default adaptive / default backoff: "
            f"calls x{adaptive.calls / backoff.calls:.2f}"
            f", p50 x{adaptive.p50 / backoff.p50:.2f}, p95 x{adaptive.p95 / backoff.p95:.2f}"
        )
    return points


LEARNT: dict[str, CompletionEstimate | None] = {}


def print_point(mix: str, label: str, point: Point) -> None:
    print(
        f"{mix:12}{label:28}{point.calls:>11.2f}{point.p50:>11.2f}{point.p95:>11.2f}"
        f"{point.worst:>9.1f}",
        flush=True,
    )


def safety_net_curve(estimate: CompletionEstimate, draw: Callable[[random.Random], float]) -> None:
    """Checks with callbacks polled by a net of per-poll probability p (budget (1 - p) / p polls
    before the answer) from the submit, on the learnt estimate with the domain's dithered delays;
    answers drawn from the mix. Callback arriving: calls = submit + net polls before the answer +
    the callback's poll. Lost: found by the net alone. Polled: the default schedule from a
    registration at age 0, the same answers."""
    backoff = build_settings().poll_backoff
    rng = random.Random(5)
    answers = [draw(rng) for _ in range(20_000)]

    def walk(p: float, ready_s: float) -> tuple[int, float]:
        """Polls at ages > 0 up to the one that finds the answer, and that one's lag."""
        age, polls = 0.0, 0
        while True:
            age += adaptive_delay(estimate, age, p, backoff, rng.random())
            polls += 1
            if age >= ready_s:
                return polls, age - ready_s

    polled = [walk(target_probability(DEFAULT_CALLS_PER_TASK), ready) for ready in answers]
    polled_lags = [lag for _, lag in polled]
    print(
        f"\nsafety net (lognormal, learnt estimate, {len(answers):,} sampled answers); polled at "
        f"the default: {1 + statistics.fmean(n for n, _ in polled):.2f} calls, lag p50 "
        f"{percentile(polled_lags, 0.5):.2f} s, p95 {percentile(polled_lags, 0.95):.2f} s"
    )
    print(
        f"{'net budget':>11}{'net p':>7}{'calls, callback arrives':>25}"
        f"{'lost: lag p50 s':>17}{'lost: lag p95 s':>17}{'bound: p95 s':>14}"
    )
    for budget in (0.1, 0.2, 0.25, 0.5, 1.0, 1.5):
        p = 1.0 / (1.0 + budget)
        walked = [walk(p, ready) for ready in answers]
        arriving = 2 + statistics.fmean(n - 1 for n, _ in walked)
        lost = [lag for _, lag in walked]
        # The best any net can do for the calls this one costs (on the mix's true CDF).
        bound = min_lost_lag_p95(lognormal_cdf, arriving - 2, horizon_s=LOGNORMAL_HORIZON_S)
        print(
            f"{budget:>11.2f}{p:>7.2f}{arriving:>25.2f}{percentile(lost, 0.5):>17.2f}"
            f"{percentile(lost, 0.95):>17.2f}{bound:>14.2f}"
        )
    polled_p95 = percentile(polled_lags, 0.95)
    needed = min_extra_calls(lognormal_cdf, polled_p95, horizon_s=LOGNORMAL_HORIZON_S)
    print(
        f"a lost callback found as soon as polling finds it (p95 {polled_p95:.2f} s) costs every "
        f"check whose callback arrives at least {2 + needed:.2f} calls, whatever the net "
        f"(service/domain/safety_net_bound.py)"
    )


# The plot's series: name, colour, and whether its points are joined (a lag target's are not:
# the budget it picks is the estimate's, not an ordered knob).
SERIES = (("backoff", "#c0392b", True), ("budget", "#2471a3", True), ("target", "#1e8449", False))


def series_of(point: Point) -> str:
    if point.setting.schedule is PollSchedule.BACKOFF:
        return "backoff"
    return "budget" if point.setting.target_p95_s is None else "target"


def plot_front(points: dict[str, list[Point]], path: str) -> None:
    """The front as an SVG: per mix, p50 and p95 lag against calls per task, backoff's settings
    beside adaptive's; the defaults ringed."""
    width, height, pad = 500, 320, 50
    panels = []
    for index, (mix, mix_points) in enumerate(points.items()):
        finite = [p for p in mix_points if math.isfinite(p.p95)]
        x_max = math.ceil(max(p.calls for p in finite) + 0.5)
        y_max = 10 * math.ceil(max(p.p95 for p in finite) / 10 + 0.5)

        def x(calls: float, x_max: float = x_max) -> float:
            return pad + (calls - 2.0) / (x_max - 2.0) * (width - 2 * pad)

        def y(lag: float, y_max: float = y_max) -> float:
            return height - pad - lag / y_max * (height - 2 * pad)

        parts = [
            f'<g transform="translate({index * width},0)">',
            f'<text x="{width / 2}" y="20" text-anchor="middle" font-weight="bold">{mix}</text>',
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
            'stroke="black"/>',
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
            f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">'
            "upstream calls per task</text>",
            f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
            'text-anchor="middle">detection lag, s</text>',
        ]
        for tick in range(2, x_max + 1):
            parts.append(
                f'<text x="{x(tick):.1f}" y="{height - pad + 16}" text-anchor="middle" '
                f'font-size="11">{tick}</text>'
            )
        for tick in range(0, y_max + 1, max(10, y_max // 6 // 10 * 10)):
            parts.append(
                f'<text x="{pad - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" '
                f'font-size="11">{tick}</text>'
            )
        for name, colour, joined in SERIES:
            series = sorted((p for p in finite if series_of(p) == name), key=lambda p: p.calls)
            for quantile, dash in (("p50", ""), ("p95", ' stroke-dasharray="5,3"')):
                line = " ".join(f"{x(p.calls):.1f},{y(getattr(p, quantile)):.1f}" for p in series)
                if joined:
                    parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}"{dash}/>')
                for p in series:
                    cx, cy = x(p.calls), y(getattr(p, quantile))
                    fill = colour if quantile == "p50" else "white"
                    parts.append(
                        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{fill}" '
                        f'stroke="{colour}"/>'
                    )
                    if p.setting.default:
                        parts.append(
                            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="8" fill="none" '
                            'stroke="black"/>'
                        )
        parts.append("</g>")
        panels.append("\n".join(parts))
    legend = (
        f'<g font-size="12" transform="translate(40,{height + 6})">'
        '<line x1="0" y1="0" x2="24" y2="0" stroke="#c0392b"/>'
        '<text x="30" y="4">backoff (initial 1-8 s)</text>'
        '<line x1="180" y1="0" x2="204" y2="0" stroke="#2471a3"/>'
        '<text x="210" y="4">adaptive, call budgets 2.25-5</text>'
        '<circle cx="420" cy="0" r="3.5" fill="#1e8449" stroke="#1e8449"/>'
        '<text x="430" y="4">adaptive, p95 targets 6-25 s</text>'
        '<text x="630" y="4">filled, solid: p50; open, dashed: p95</text>'
        '<circle cx="870" cy="0" r="8" fill="none" stroke="black"/>'
        '<text x="884" y="4">default</text></g>'
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(panels)}" '
        f'height="{height + 24}" font-family="sans-serif" font-size="13">\n'
        '<rect width="100%" height="100%" fill="white"/>\n'
        + "\n".join(panels)
        + "\n"
        + legend
        + "\n</svg>\n"
    )
    with open(path, "w", encoding="utf-8") as out:
        out.write(svg)
    print(f"front drawn in {path}")


# --- a callback outage ---------------------------------------------------------------------------


@dataclass
class Check:
    """One check with a callback in the outage run: its submit, answer and callback (None: lost),
    and what the schedule did to it."""

    submitted_s: float
    ready_s: float
    callback_s: float | None
    next_poll_s: float = math.inf
    calls: int = 1  # the submit
    found_s: float | None = None
    hinted: bool = False


@dataclass
class OutageRun:
    checks: list[Check]
    # When the record stopped trusting callbacks, and when it trusted them again.
    untrusted_at: list[float]
    trusted_at: list[float]


def true_estimate(cdf: Callable[[float], float], total: float = 10_000.0) -> CompletionEstimate:
    """The estimate a warm deployment converges to: the mix's true mass per bin."""
    weights = [total * (cdf(EDGES[i + 1]) - cdf(EDGES[i])) for i in range(len(EDGES) - 1)]
    return CompletionEstimate(tuple(weights))


def outage_run(
    answers: list[float],
    rate: float,
    outage: tuple[float, float],
    *,
    delay_s: float,
    outage_rule: bool,
    estimate: CompletionEstimate,
    late_wait_s: float | None = None,
) -> OutageRun:
    """Checks with callbacks submitted at `rate` per second, answers after `answers`, their
    callbacks `delay_s` after the answer, all lost while the path is down (`outage`, seconds);
    the domain's safety net, schedule and callback record decide every poll, as the engine's
    write-backs do (one completion per write-back), and a record that stops trusting callbacks
    makes the waiting checks due (`stop_waiting`). `outage_rule` False: the loss share alone
    (main before this change)."""
    settings = build_settings()
    policy, backoff = settings.schedule_policy, settings.poll_backoff
    rng = random.Random(17)
    checks: list[Check] = []
    events: list[tuple[float, int, str, int]] = []
    order = itertools.count()
    record, record_at = CallbackRecord(), 0.0
    untrusted_at: list[float] = []
    trusted_at: list[float] = []

    def count(now: float, heard: int, missed: int) -> None:
        nonlocal record, record_at
        before = record.decayed(now - record_at, CALLBACK_HALF_LIFE_S)
        after = before.after(heard, missed, settings.callback_loss_tolerance, late_wait_s)
        if not outage_rule:
            after = replace(after, outage=False, streak=0)
        record, record_at = after, now
        if before.trusted and not after.trusted:
            untrusted_at.append(now)
            for index, check in enumerate(checks):  # stop_waiting
                if check.found_s is None and not check.hinted:
                    due = min(check.next_poll_s, max(now, check.submitted_s + backoff.initial_s))
                    schedule(index, due)
        elif after.trusted and not before.trusted:
            trusted_at.append(now)

    def schedule(index: int, at: float) -> None:
        checks[index].next_poll_s = at
        heapq.heappush(events, (at, next(order), "poll", index))

    for index, after_s in enumerate(answers):
        submitted = index / rate
        ready = submitted + after_s
        callback = ready + delay_s
        lost = outage[0] <= callback < outage[1]
        checks.append(Check(submitted, ready, None if lost else callback))
        heapq.heappush(events, (submitted, next(order), "submit", index))
        if not lost:
            heapq.heappush(events, (callback, next(order), "callback", index))
    while events:
        now, _, kind, index = heapq.heappop(events)
        check = checks[index]
        if kind == "submit":
            if record.trusted:
                delay = safety_net_delay(
                    policy, backoff, estimate, age_s=0.0, first_s=30.0, rand=rng.random()
                )
            else:
                delay = next_poll_delay(backoff, 1, rng.random())
            schedule(index, now + delay)
        elif kind == "callback":
            if check.found_s is None:  # the hint's poll finds the answer: heard
                check.calls += 1
                check.found_s, check.hinted = now, True
                count(now, 1, 0)
            elif now - check.found_s <= LATE_CALLBACK_GRACE_S:  # a late hint: heard after all
                before = record.decayed(now - record_at, CALLBACK_HALF_LIFE_S)
                record, record_at = before.heard_late(now - check.found_s), now
                if not outage_rule:
                    record = replace(record, outage=False, streak=0)
                if record.trusted and not before.trusted:
                    trusted_at.append(now)
        elif check.found_s is None and now == check.next_poll_s:
            check.calls += 1
            age = now - check.submitted_s
            if check.ready_s <= now:
                check.found_s = now
                count(now, 0, 1)
            elif record.trusted:
                delay = safety_net_delay(
                    policy, backoff, estimate, age_s=age, first_s=30.0, rand=rng.random()
                )
                schedule(index, now + delay)
            else:
                delay = next_delay(
                    policy, backoff, estimate, polls_made=check.calls, age_s=age, rand=rng.random()
                )
                schedule(index, now + delay)
    return OutageRun(checks, untrusted_at, trusted_at)


def polled_lags(answers: list[float], estimate: CompletionEstimate) -> list[float]:
    """The same answers on registered tasks, polled without a callback at the default schedule
    (the registration's poll at age 0, then the learnt schedule)."""
    settings = build_settings()
    rng = random.Random(23)
    lags = []
    for ready in answers:
        age = 0.0
        while age < ready:
            age += next_delay(
                settings.schedule_policy,
                settings.poll_backoff,
                estimate,
                polls_made=1,
                age_s=age,
                rand=rng.random(),
            )
        lags.append(age - ready)
    return lags


def callback_outage(args: argparse.Namespace) -> None:
    """A callback path that breaks for `--outage-s` and heals, on checks with callbacks arriving
    at `--outage-rate` per second (lognormal answers, the estimate at the mix's truth): the calls
    of checks whose callbacks arrive, and the lag of those lost, beside the same checks polled
    without a callback; with the outage rule and with the loss share alone."""
    estimate = true_estimate(lognormal_cdf)
    rate, length = args.outage_rate, args.outage_s
    start = length  # healthy for as long before, and after
    total = round(3 * length * rate)
    rng = random.Random(29)
    answers = [lognormal(rng) for _ in range(total)]
    polled = polled_lags(answers, estimate)
    print(
        f"\ncallback outage: {total} checks with callbacks, {rate:g}/s; every callback lost from "
        f"{start:g} s to {start + length:g} s of a {3 * length:g} s run (lognormal answers)"
    )
    print(
        f"{'rule':18}{'cb delay':>9}{'arriving: calls':>16}{'lost':>6}{'lost p50':>9}"
        f"{'lost p95':>9}{'lost max':>9}{'same, polled p95':>17}{'untrusted after':>16}"
        f"{'trusted after':>14}"
    )
    # The outage rule waits past the late callbacks it has seen (learnt); "fixed wait" always
    # waits LATE_CALLBACK_GRACE_S, as if the callbacks' delay were not learnt.
    variants = [
        (label, rule, delay_s, wait_s)
        for delay_s in (0.0, 2.0, 5.0)
        for label, rule, wait_s in (
            ("outage + share", True, None),
            ("  fixed wait", True, LATE_CALLBACK_GRACE_S),
            ("share only (main)", False, None),
        )
    ]
    for label, outage_rule, delay_s, wait_s in variants:
        if True:
            run = outage_run(
                answers,
                rate,
                (start, start + length),
                delay_s=delay_s,
                outage_rule=outage_rule,
                estimate=estimate,
                late_wait_s=wait_s,
            )
            arriving = [
                c.calls for c in run.checks if c.callback_s is not None and c.found_s is not None
            ]
            lost = [i for i, c in enumerate(run.checks) if c.callback_s is None]
            lost_lags = [(run.checks[i].found_s or math.inf) - run.checks[i].ready_s for i in lost]
            same = [polled[i] for i in lost]
            down = next((t - start for t in run.untrusted_at if t >= start), math.inf)
            back = next((t - start - length for t in run.trusted_at if t >= start), math.inf)
            print(
                f"{label:18}{delay_s:>8.0f}s{statistics.fmean(arriving):>16.2f}{len(lost):>6}"
                f"{percentile(lost_lags, 0.5):>9.2f}{percentile(lost_lags, 0.95):>9.2f}"
                f"{max(lost_lags):>9.1f}{percentile(same, 0.95):>17.2f}{down:>15.1f}s"
                f"{back:>13.1f}s",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000, help="measured tasks per run")
    parser.add_argument("--warmup", type=int, default=400, help="tasks run before measuring")
    parser.add_argument("--rate", type=float, default=5.0, help="registrations per second")
    parser.add_argument("--big", type=int, default=5000, help="the big client's backlog")
    parser.add_argument("--ceiling", type=float, default=20.0, help="calls/s in the saturation run")
    parser.add_argument("--parts", default="front,net,outage,saturation", help="which parts to run")
    parser.add_argument("--outage-rate", type=float, default=3.0, help="checks/s, outage part")
    parser.add_argument("--outage-s", type=float, default=600.0, help="the outage's length")
    parser.add_argument("--plot", default="docs/schedule-front.svg", help="the front's SVG")
    parser.add_argument(
        "--no-db", dest="db", action="store_false", help="skip the defaults' PostgreSQL runs"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"load average at start: {os.getloadavg()}")
    started = time.perf_counter()
    with scratch_database("phonebridge_bench", migrated=True) as database:
        url = database.url
        if "front" in parts:
            points = front(url, args)
            if args.plot:
                plot_front(points, args.plot)
        if "net" in parts:
            lognormal_mix = next(iter(MIXES))
            learnt = LEARNT.get(lognormal_mix)
            if learnt is None:
                default = next(
                    s for s in FRONT if s.default and s.schedule is PollSchedule.ADAPTIVE
                )
                learnt = asyncio.run(run_mix(url, MIXES[lognormal_mix], default, args)).learnt
            assert learnt is not None
            safety_net_curve(learnt, MIXES[lognormal_mix])
        if "outage" in parts:
            callback_outage(args)
        if "saturation" in parts:
            print(f"\nsaturation: {args.big} + 50 due tasks, ceiling {args.ceiling:g} calls/s")
            print(
                f"{'claim':24}{'small p50 s':>12}{'small p95 s':>12}"
                f"{'big backlog done after s':>26}"
            )
            for label, fair in (("oldest due first (main)", False), ("fair across clients", True)):
                lags, big_done = asyncio.run(saturation(url, fair, args))
                print(
                    f"{label:24}{percentile(lags, 0.5):>12.1f}{percentile(lags, 0.95):>12.1f}"
                    f"{big_done:>26.1f}"
                )
    print(
        f"\nwall time {time.perf_counter() - started:.0f} s; load average at end: {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
