"""Re-checks: what `recheck` does to a list where some numbers first answer "try again later".

Two lists of the same numbers' scripts run side by side, each by its own client, through
`POST /v1/checks`: one without `recheck`, one with `{"verdicts": ["retry"], "after_s": 60,
"max": 1}`. A share of the numbers (10% by default) first answers `temp_unavailable`; on a second
submit, a share of those (`--persist`, an assumption: how often "try again later" still holds a
minute on) answers it again, the rest `ring`; every other number answers `ring`. Each answer
becomes ready after a lognormal time (median 15 s, sigma 0.7), as in bench/lag.py.

Per list it prints the share of results whose verdict is still `retry` at the end, upstream calls
per number (submits and polls, from the simulator's log), and how long the numbers that first
answered `retry` took to reach their final answer. Real time, real processes, as an operator
runs them (`phonebridge upstream-sim`, `api`, `worker` and `scheduler` on a scratch database,
bench/lag.py's stack): the re-check waits its 60 s, so a run takes about three minutes.

    .venv/bin/python bench/rechecks.py [--numbers 300] [--retry-share 0.1] [--persist 0.3]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime

import httpx
from lag import ARRIVAL_SPREAD_S, Receiver, Stack, lognormal_delays, percentile
from support import scratch_database

from service.domain.verdicts import Verdict, verdict_of
from service.sim.server import phonebridge_executable

AFTER_S = 60
GRACE_S = 400.0


@dataclass(frozen=True)
class Number:
    phone_number: str
    scripts: list[str]
    # It first answers `temp_unavailable`.
    retry_first: bool


def numbers_of(args: argparse.Namespace, prefix: str) -> list[Number]:
    """The list: the same draws for every prefix, so both lists hold the same scripts."""
    rng = random.Random(args.seed)
    first = lognormal_delays(args.numbers, args.median_s, args.sigma, args.seed)
    second = lognormal_delays(args.numbers, args.median_s, args.sigma, args.seed + 1)
    retry_first = set(rng.sample(range(args.numbers), round(args.numbers * args.retry_share)))
    numbers = []
    for index in range(args.numbers):
        phone_number = f"{prefix}{index:06d}"
        if index not in retry_first:
            numbers.append(Number(phone_number, [f"ring-0-{first[index]:.3f}s"], False))
            continue
        again = "temp_unavailable" if rng.random() < args.persist else "ring"
        scripts = [f"temp_unavailable-0-{first[index]:.3f}s", f"{again}-0-{second[index]:.3f}s"]
        numbers.append(Number(phone_number, scripts, True))
    return numbers


def second_client(stack: Stack) -> httpx.Client:
    key = subprocess.run(
        [phonebridge_executable(), "api-key", "create", "--name", "bench-rechecks"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    return httpx.Client(
        base_url=stack.api_url, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def final_tasks(client: httpx.Client, task_ids: list[str]) -> list[dict[str, object]] | None:
    tasks = [client.get(f"/v1/tasks/{task_id}").json() for task_id in task_ids]
    return None if any(task["state"] == "pending" for task in tasks) else tasks


def report(name: str, numbers: list[Number], tasks: list[dict[str, object]], calls: int) -> None:
    statuses = [
        str(task["result"]["phone_status"]) if isinstance(task["result"], dict) else None
        for task in tasks
    ]
    retry_left = sum(1 for s in statuses if s is not None and verdict_of(s) is Verdict.RETRY)
    took = [
        (
            datetime.fromisoformat(str(task["completed_at"]))
            - datetime.fromisoformat(str(task["submitted_at"]))
        ).total_seconds()
        for number, task in zip(numbers, tasks, strict=True)
        if number.retry_first
    ]
    print(
        f"{name:22s} {len(tasks):6d} {100 * retry_left / len(tasks):10.1f}% "
        f"{calls / len(tasks):12.2f} {percentile(took, 0.5):12.1f} {percentile(took, 0.95):12.1f}"
    )


def run(args: argparse.Namespace, db_url: str) -> None:
    receiver = Receiver()
    stack = Stack(args, receiver, db_url)
    other = second_client(stack)
    try:
        plain = numbers_of(args, "5255100")
        rechecked = numbers_of(args, "5255200")
        for number in plain + rechecked:
            stack.sim.control.script_number(number.phone_number, *number.scripts)
        recheck = {"verdicts": ["retry"], "after_s": AFTER_S, "max": 1}
        plain_ids: list[str] = []
        rechecked_ids: list[str] = []
        spacing = ARRIVAL_SPREAD_S / args.numbers
        for without, with_recheck in zip(plain, rechecked, strict=True):
            answer = stack.http.post("/v1/checks", json={"phone_number": without.phone_number})
            answer.raise_for_status()
            plain_ids.append(answer.json()["task_id"])
            body = {"phone_number": with_recheck.phone_number, "recheck": recheck}
            answer = other.post("/v1/checks", json=body)
            answer.raise_for_status()
            rechecked_ids.append(answer.json()["task_id"])
            time.sleep(spacing)
        deadline = time.monotonic() + AFTER_S + GRACE_S
        plain_tasks = rechecked_tasks = None
        while time.monotonic() < deadline and (plain_tasks is None or rechecked_tasks is None):
            time.sleep(2)
            plain_tasks = plain_tasks or final_tasks(stack.http, plain_ids)
            rechecked_tasks = rechecked_tasks or final_tasks(other, rechecked_ids)
        if plain_tasks is None or rechecked_tasks is None:
            raise RuntimeError("the lists did not finish in time")
        # Every submit goes to the simulator under no task_id: the plain list's are one per
        # number, the rest of all calls are the re-checked list's.
        polls_plain = sum(
            len(stack.sim.control.calls(task_id=task_id, endpoint="task_result"))
            for task_id in plain_ids
        )
        calls_plain = len(plain) + polls_plain
        calls_all = int(stack.sim.control.stats()["calls"])
        report("without recheck", plain, plain_tasks, calls_plain)
        report("recheck after_s 60", rechecked, rechecked_tasks, calls_all - calls_plain)
    finally:
        other.close()
        stack.stop()
        receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numbers", type=int, default=300)
    parser.add_argument("--retry-share", type=float, default=0.1)
    parser.add_argument("--persist", type=float, default=0.3)
    parser.add_argument("--median-s", type=float, default=15.0)
    parser.add_argument("--sigma", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--schedule", choices=["backoff", "adaptive"], default="backoff")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    print(
        f"{args.numbers} numbers a list, {100 * args.retry_share:.0f}% first answer "
        f"temp_unavailable, {100 * args.persist:.0f}% of those again a minute on; answers ready "
        f"after lognormal(median {args.median_s} s, sigma {args.sigma})",
        flush=True,
    )
    print(
        f"{'list':22s} {'n':>6s} {'retry left':>11s} {'calls/number':>12s} "
        f"{'retry p50 s':>12s} {'retry p95 s':>12s}",
        flush=True,
    )
    with scratch_database("phonebridge_bench", migrated=True) as database:
        run(args, database.url)
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
