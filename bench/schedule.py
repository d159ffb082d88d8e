"""The poll schedule: `backoff` vs `adaptive`, side by side, and fair claims under saturation.

Runs the engine's own code on a virtual clock against a real PostgreSQL: each tick (0.25 s, as
the scheduler) claims due tasks with the claim statement (as many as the rate ceiling allows),
reads them leased, decides each answer with the domain's `decide_after_poll` on the estimate read
from the store, and writes the batch back with the write-back and the estimate update, exactly as
a worker does. Only upstream is simulated: a task's answer is ready a drawn time after its
`submitted_at`. Virtual time makes hours of schedule a minute of CPU and the figures independent of
the machine's load (printed anyway).

1. Detection lag (OK poll - answer ready) p50/p95 and upstream calls per task, on a lognormal mix
   (median 15 s, sigma 0.7) and a bimodal one (70% around 5 s, 30% around 60 s), each measured on
   tasks registered after a warm-up that lets the estimate form. Prints the schedule each mix
   learnt: its quantiles and the poll ages of a new task.
2. Saturation: two clients, 5,000 and 50 tasks due (answers ready), a ceiling of 20 calls/s; the
   small client's p95 lag with the fair claim vs main's oldest-due-first claim, and the time the
   big client's backlog takes.

    .venv/bin/python bench/schedule.py [--tasks 1000] [--warmup 400] [--rate 5] [--big 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from poll import percentile
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import scratch_database

from service.config import build_settings
from service.domain.answers import Outcome, OutcomeKind, PhoneResult
from service.domain.backoff import BackoffPolicy
from service.domain.completion import CompletionEstimate
from service.domain.polling import DecisionKind, PollPolicy, TaskSnapshot, decide_after_poll
from service.domain.schedule import PollSchedule, adaptive_next_age
from service.engine.account_estimate import completion_increments
from service.store.db import create_engine_for, session_factory, transaction
from service.store.estimates import add_to_estimates, load_estimate
from service.store.leases import claim_due
from service.store.polling import (
    PollWrite,
    claim_due_tasks,
    load_leased_tasks,
    record_poll_results,
)

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


def policy_for(schedule: PollSchedule) -> PollPolicy:
    settings = build_settings(poll_schedule=schedule)
    return PollPolicy(
        BackoffPolicy(settings.poll_initial_s, settings.poll_max_s),
        schedule=settings.schedule_policy,
    )


async def run_mix(
    url: str,
    draw: Callable[[random.Random], float],
    schedule: PollSchedule,
    args: argparse.Namespace,
) -> Run:
    """Warm-up tasks until all are done (the estimate forms), then the measured ones; both arrive
    at `args.rate` per second."""
    engine = create_engine_for(
        url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2
    )
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.execute(text("TRUNCATE tasks, completion_estimates CASCADE"))
    world = World(sessions, datetime.now(UTC))
    rng, draws = random.Random(7), random.Random(11)
    policy = policy_for(schedule)
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
    await engine.dispose()
    return run


async def saturation(url: str, fair: bool, args: argparse.Namespace) -> tuple[list[float], float]:
    """The small client's lags, and the seconds until the big client's last task completed."""
    engine = create_engine_for(
        url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2
    )
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
    run, rng, policy = Run(), random.Random(3), policy_for(PollSchedule.ADAPTIVE)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000, help="measured tasks per run")
    parser.add_argument("--warmup", type=int, default=400, help="tasks run before measuring")
    parser.add_argument("--rate", type=float, default=5.0, help="registrations per second")
    parser.add_argument("--big", type=int, default=5000, help="the big client's backlog")
    parser.add_argument("--ceiling", type=float, default=20.0, help="calls/s in the saturation run")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    started = time.perf_counter()
    with scratch_database("phonebridge_bench", migrated=True) as database:
        url = database.url
        target_p = build_settings().schedule_policy.target_p
        print(f"\n{'mix':40}{'schedule':>10}{'lag p50 s':>11}{'lag p95 s':>11}{'calls/task':>12}")
        for mix, draw in MIXES.items():
            for schedule in (PollSchedule.BACKOFF, PollSchedule.ADAPTIVE):
                run = asyncio.run(run_mix(url, draw, schedule, args))
                print(
                    f"{mix:40}{schedule.value:>10}{percentile(run.lags, 0.5):>11.1f}"
                    f"{percentile(run.lags, 0.95):>11.1f}{statistics.fmean(run.calls):>12.2f}"
                )
            print(f"    {learnt_schedule(run.learnt, target_p)}")
        print(f"\nsaturation: {args.big} + 50 due tasks, ceiling {args.ceiling:g} calls/s")
        print(f"{'claim':24}{'small p50 s':>12}{'small p95 s':>12}{'big backlog done after s':>26}")
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
